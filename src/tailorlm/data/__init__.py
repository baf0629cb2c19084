"""User data: the record types, the store, and dataset loaders."""

from tailorlm.data.derived import Artifact, Fact, Scope
from tailorlm.data.provenance import ArtifactRef, Provenance, StaleArtifact, TrainingManifest
from tailorlm.data.records import (
    USER_ATTRIBUTES,
    Document,
    Interaction,
    Item,
    Preference,
    Record,
    TaskExample,
    User,
    content_id,
    to_timestamp,
)
from tailorlm.data.store import DeletionReport, Store, Writer, WriteReport

__all__ = [
    "USER_ATTRIBUTES",
    "Artifact",
    "ArtifactRef",
    "DeletionReport",
    "Document",
    "Fact",
    "Interaction",
    "Item",
    "Preference",
    "Provenance",
    "Record",
    "Scope",
    "StaleArtifact",
    "Store",
    "TaskExample",
    "TrainingManifest",
    "User",
    "WriteReport",
    "Writer",
    "content_id",
    "to_timestamp",
]
