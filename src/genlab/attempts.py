"""Where a run folder keeps the record of each start: `.hydra/` for the first, then
`.hydra/attempt-N/` for each resume, each with Hydra's three files (config.yaml, hydra.yaml,
overrides.yaml, written last). Light on imports: genlab-report reads these too."""

from pathlib import Path

from omegaconf import OmegaConf

RECORD = ".hydra"


def first_record(folder: Path) -> Path:
    return folder / RECORD


def complete(record: Path) -> bool:
    return (record / "overrides.yaml").is_file()


def attempt_records(folder: Path) -> list[Path]:
    """The records of every start of the run in `folder`, oldest first (a record that a
    killed start left half written is not one)."""
    first = first_record(folder)
    if not complete(first):
        return []
    later = [p for p in first.glob("attempt-*") if p.name[8:].isdigit() and complete(p)]
    return [first, *sorted(later, key=lambda p: int(p.name[8:]))]


def latest_record(folder: Path) -> Path:
    """The record of the run's latest start (`.hydra/` or `.hydra/attempt-N/`)."""
    records = attempt_records(folder)
    return records[-1] if records else first_record(folder)


def recorded_overrides(record: Path) -> list[str]:
    """The overrides a record's config was composed with."""
    path = record / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []
