#!/usr/bin/env bash
# Start the local servers the test suite talks to (Redis, PostgreSQL, MariaDB) when they are
# installed but not running. The Kafka-protocol broker (tansu) and the MongoDB-protocol server
# (secantus) are started by the test fixtures themselves, on free ports.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379 && command -v redis-server >/dev/null; then
  echo "starting redis-server on 6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
if ! port_open 5432 && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! port_open 3306 && [ -x /usr/sbin/mariadbd ]; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 30); do
  if port_open 6379 && port_open 5432 && port_open 3306; then break; fi
  sleep 0.5
done
exit 0
