"""Documents, chunks and spans: the data side of the state. Text lives in the chunk store."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

DocumentFormat = Literal["txt", "md", "rst", "html", "json", "jsonl", "csv", "pdf"]


class DocumentRef(BaseModel):
    """A loaded document, without its text (which sits in the chunk store under `id`)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="sha256 hex of the source bytes: stable across runs.")
    source: str = Field(description="Where it came from: a path, a URL, or 'inline:<name>'.")
    kind: Literal["file", "url", "inline"]
    format: DocumentFormat
    bytes: NonNegativeInt = Field(description="Size of the raw source in bytes.")
    chars: NonNegativeInt = Field(description="Length of the extracted text in characters.")
    title: str | None = Field(None, description="Title found in the document, if any.")


class LoadedDocument(BaseModel):
    """A document with its extracted text, as returned by the loaders."""

    ref: DocumentRef
    text: str


class Chunk(BaseModel):
    """A piece of a document; `text == document_text[start:end]` always holds."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="'<doc id[:12]>:<start>-<end>': unique and stable.")
    doc_id: str
    index: NonNegativeInt = Field(description="Position of the chunk in its document.")
    start: NonNegativeInt = Field(description="Character offset of the first character.")
    end: NonNegativeInt = Field(description="Character offset one past the last character.")
    text: str


class Span(BaseModel):
    """A character range of a document's text that an answer rests on."""

    model_config = ConfigDict(frozen=True)

    doc_id: str
    start: NonNegativeInt
    end: NonNegativeInt
    text: str = Field(description="The source text at [start:end], kept for readability.")

    @property
    def length(self) -> int:
        """Number of characters covered."""
        return self.end - self.start
