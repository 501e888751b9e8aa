"""Which stored fields a trial reads (`channels`) and predicts (`target_fields`), resolved against a store once.

A multi-field sequence (temperature, velx, dfun, ... of one simulation) holds each field as a channel. A trial
names its input fields and its predicted fields; by default it reads the store's first field and predicts it.
A predicted field must be an input too: the baselines (persistence, context median, optical flow) forecast a field
from its own past, and skill is measured against them. Models that feed their predictions back as inputs
(ConvLSTM seq2seq, PredRNN-v2) predict exactly their inputs.
"""

from __future__ import annotations

from bubbles.data.store import FrameStore
from bubbles.errors import UserError
from bubbles.params import fail, parse_strings

Fields = tuple[str, ...]


def parse_fields(where: str, key: str, value: object) -> Fields:
    """A list of field names ('dfun,temperature' from --set too), each once."""
    names = tuple(n.strip() for n in value.split(",") if n.strip()) if isinstance(value, str) else parse_strings(where, key, value)
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise fail(where, key, f"field {twice!r} is named twice")
    return names


def store_fields(store: FrameStore) -> Fields:
    """The fields every sequence of the store has, in the order of the first sequence."""
    infos = [store.sequences[n] for n in sorted(store.sequences)]
    if not infos:
        return ()
    return tuple(f for f in infos[0].fields if all(f in i.fields for i in infos[1:]))


def resolve_fields(store: FrameStore, channels: Fields, targets: Fields, feedback: bool) -> tuple[Fields, Fields]:
    """(channels, targets) with their defaults filled in, every name checked against the store: an unknown field,
    a field some sequence lacks, a target that is no input, or (for a model that feeds back) targets that are not
    exactly the channels are each one UserError line."""
    infos = [store.sequences[n] for n in sorted(store.sequences)]
    if not infos:
        raise UserError(f"{store.path}: the store holds no sequences")
    channels = channels or infos[0].fields[:1]
    targets = targets or channels[:1]
    every = sorted({f for i in infos for f in i.fields})
    for key, names in (("channels", channels), ("target_fields", targets)):
        for name in names:
            if name not in every:
                raise UserError(f"{key}: {store.path} has no field {name!r} (its fields: {', '.join(every)})")
            lacking = next((i for i in infos if name not in i.fields), None)
            if lacking is not None:
                raise UserError(f"{key}: sequence {lacking.name!r} of {store.path} has no field {name!r} "
                                f"(its fields: {', '.join(lacking.fields)})")
    outside = [t for t in targets if t not in channels]
    if outside:
        raise UserError(f"target_fields: {outside[0]!r} is not among channels [{', '.join(channels)}]; a predicted field "
                        "must also be an input (its baselines forecast it from its own past)")
    if feedback and targets != channels:
        raise UserError(f"target_fields [{', '.join(targets)}] differ from channels [{', '.join(channels)}]: this model "
                        "feeds its predictions back as inputs, so it predicts every input field in order "
                        "(set target_fields to the channels, or use convlstm seq2one / simvp)")
    return channels, targets
