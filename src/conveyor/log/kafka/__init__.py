"""The Kafka log backend (``kafka://host:9092?prefix=nuxeo-``), on confluent-kafka.

Topics and consumer groups are named as Nuxeo names them (prefix + ``Name.id``) and records are
written in Nuxeo's ``avro`` encoding by default, so Conveyor and Nuxeo nodes share streams.
See ``docs/kafka.md``.
"""

from conveyor.log.kafka.config import KafkaSettings, parse_kafka_url
from conveyor.log.kafka.manager import KafkaLogManager

__all__ = ["KafkaLogManager", "KafkaSettings", "parse_kafka_url"]
