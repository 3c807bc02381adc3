"""Canonical Parquet files: the same rows give the same bytes however they were produced.

A run's tables are produced in chunks of patients (any chunk size, any backend) or in one piece in memory. Each
piece is converted by :func:`to_arrow` (its pandas metadata is that of the piece's dtypes, not of its values), the
pieces' schemas are merged by :func:`canonical_schema`, and :func:`write_canonical` streams the rows, in the order
given, into row groups of exactly :data:`ROW_GROUP_ROWS` rows (the last one shorter), each written from contiguous
arrays. The bytes therefore depend on the rows only, and memory is bounded by one row group plus one piece."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .memory import release_memory

__all__ = ["ROW_GROUP_ROWS", "to_arrow", "encode", "canonical_schema", "write_canonical", "read_frame"]

ROW_GROUP_ROWS = 65_536
_COMPRESSION = "zstd"
_PANDAS = b"pandas"
_EXTENSION_DTYPES = {pa.float64(): pd.Float64Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table without its index, its pandas metadata derived from the column dtypes only
    (an all-missing column of a small piece must not change the file's metadata)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    dtypes_only = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False).metadata[_PANDAS]
    return table.replace_schema_metadata({_PANDAS: dtypes_only})


def encode(frame: pd.DataFrame) -> bytes:
    """``frame`` as the bytes of a Parquet file (a chunk's part, sent from a worker to the writer)."""
    sink = io.BytesIO()
    pq.write_table(to_arrow(frame), sink, compression=_COMPRESSION)
    return sink.getvalue()


def canonical_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema for pieces of the same table: types unified (a column missing everywhere in a piece is typed
    from the others; integer and float widen to float), and each column's pandas metadata taken from the first
    piece whose type for it is the unified one."""
    if not schemas:
        raise ValueError("canonical_schema needs at least one schema")
    names = schemas[0].names
    for schema in schemas[1:]:
        if schema.names != names:
            raise ValueError(f"pieces of one table have different columns: {names} vs {schema.names}")
    unified = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    documents = [json.loads(s.metadata[_PANDAS]) for s in schemas if s.metadata and _PANDAS in s.metadata]
    if not documents:
        return unified
    columns = []
    for i, field in enumerate(unified):
        source = next((d for d, s in zip(documents, schemas) if s.field(i).type == field.type), documents[0])
        columns.append(source["columns"][i])
    document = {**documents[0], "columns": columns}
    return unified.with_metadata({_PANDAS: json.dumps(document).encode()})


def write_canonical(pieces: Iterable[pa.Table], schema: pa.Schema, path: Path,
                    metadata: dict[str, str] | None = None, row_group_rows: int = ROW_GROUP_ROWS) -> Path:
    """Stream ``pieces`` (in row order, each castable to ``schema``) into the Parquet file ``path``, written
    atomically (``.partial`` then rename), in row groups of ``row_group_rows`` rows whatever the pieces' sizes;
    ``metadata`` is added to the file's key-value metadata."""
    schema = schema.with_metadata({**(schema.metadata or {}),
                                   **{k.encode(): v.encode() for k, v in (metadata or {}).items()}})
    partial = path.with_suffix(path.suffix + ".partial")
    with pq.ParquetWriter(partial, schema, compression=_COMPRESSION) as writer:
        pending: list[pa.Table] = []
        rows = 0
        for piece in pieces:
            pending.append(piece.cast(schema))
            rows += piece.num_rows
            while rows >= row_group_rows:
                merged = pa.concat_tables(pending).combine_chunks()
                writer.write_table(merged.slice(0, row_group_rows), row_group_size=row_group_rows)
                pending, rows = [merged.slice(row_group_rows)], rows - row_group_rows
        if rows:
            writer.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=row_group_rows)
    os.replace(partial, path)
    return path


def read_frame(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The table at ``path`` as ``pd.read_parquet`` returns it, except that text columns are pandas categoricals
    (one byte per row for a few distinct values), read one column at a time and dictionary-encoded (one Python
    object per distinct value, not per row): a fraction of the peak memory for a million patients. Only
    ``columns`` (default all, in the file's order otherwise in the order given)."""
    schema = pq.read_schema(path)
    dtypes = schema.empty_table().to_pandas().dtypes
    text = [field.name for field in schema if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)]
    file = pq.ParquetFile(path, read_dictionary=text)
    data = {}
    for name in columns or schema.names:
        strings = name in text
        column = file.read(columns=[name]).column(0)
        extension = isinstance(dtypes[name], pd.api.extensions.ExtensionDtype)
        values = column.to_pandas(types_mapper=_EXTENSION_DTYPES.get if extension and not strings else None)
        data[name] = values if strings else values.astype(dtypes[name])
        del values
        del column
        release_memory()
    return pd.DataFrame(data, copy=False)  # the columns as read (a copy would double the peak)
