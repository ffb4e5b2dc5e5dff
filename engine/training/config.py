"""Training configuration: a TOML file validated on load, and its resolved form written to a run.

A config has four sections::

    [data]        paths, feature_set, options (a table of feature-set options), max_events,
                  dask ("local" or a Dask scheduler address: read the features on a Dask cluster),
                  layout_file (a layout TOML file, or a list of them, considered with the known layouts)
    [model]       family ("gan", "vae", "flow") and the hyperparameters passed to build_model
    [training]    epochs, batch_size, lr, weight_decay, scheduler, seed, device, log_every,
                  val_fraction, test_fraction, metric_events
    [validation]  estimator settings and thresholds of ``ValidationSettings``, read by the validation stage

Relative data and layout paths are resolved against the folder of the config file. Every
invalid key, type or value, in every section, raises ``ConfigError`` naming the key, the
value and what is allowed, before any data is read.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cmsgen.engine.errors import ConfigError, DataNotFoundError

MODEL_FAMILIES = ("gan", "vae", "flow")
SCHEDULERS = ("none", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
SECTIONS = ("data", "model", "training", "validation")
DATA_KEYS = ("paths", "feature_set", "options", "max_events", "dask", "layout_file")
# The first bytes of data files that are easily passed in place of a config, and their names.
DATA_FILE_SIGNATURES = ((b"root", "a ROOT file"), (b"PAR1", "a Parquet file"))


@dataclass(frozen=True)
class DataConfig:
    """Data files and the feature set that turns their events into a matrix."""

    paths: tuple[str, ...]
    feature_set: str = "dimuon"
    options: dict[str, Any] = field(default_factory=dict)
    max_events: int | None = None
    # None reads the features in this process; "local" or a scheduler address reads them on Dask.
    dask: str | None = None
    # Layout TOML files considered, with the built-in and user layouts, when the layout is detected.
    layout_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """The model family and its hyperparameters (passed unchanged to ``build_model``)."""

    family: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings. ``lr`` is the learning rate, and the fractions are shares of the selected events."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    metric_events: int = 5000


@dataclass(frozen=True)
class RunConfig:
    """A complete, validated training configuration."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def with_overrides(
        self,
        *,
        paths: list[str] | None = None,
        device: str | None = None,
        epochs: int | None = None,
        dask: str | None = None,
        layout_files: list[str] | None = None,
    ) -> RunConfig:
        """Return a copy with command-line overrides applied and validated.

        ``paths`` replace ``data.paths`` and ``layout_files`` replace ``data.layout_file``, both
        resolved against the current directory. ``dask`` replaces ``data.dask``. An invalid value
        raises ``ConfigError`` naming the command-line option (``--device``, ``--epochs``), not the key.
        """
        config = self
        if paths:
            resolved = tuple(str(Path(path).expanduser().resolve()) for path in paths)
            config = replace(config, data=replace(config.data, paths=resolved))
        if layout_files:
            resolved = tuple(str(Path(path).expanduser().resolve()) for path in layout_files)
            config = replace(config, data=replace(config.data, layout_files=resolved))
        if dask is not None:
            config = replace(config, data=replace(config.data, dask=_dask_address(dask)))
        training_values: dict[str, Any] = {}
        if device is not None:
            if device not in DEVICES:
                raise ConfigError(f"--device {device!r} is invalid: expected one of {', '.join(DEVICES)}")
            training_values["device"] = device
        if epochs is not None:
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ConfigError(f"--epochs {epochs!r} is invalid: expected an integer >= 1")
            training_values["epochs"] = epochs
        if training_values:
            merged = {**asdict(config.training), **training_values}
            config = replace(config, training=_parse_training(merged))
        return config

    def to_dict(self) -> dict[str, Any]:
        """Return the config as nested plain tables, the form written to ``config.toml``."""
        data: dict[str, Any] = {"paths": list(self.data.paths), "feature_set": self.data.feature_set}
        if self.data.max_events is not None:
            data["max_events"] = self.data.max_events
        if self.data.dask is not None:
            data["dask"] = self.data.dask
        if self.data.layout_files:
            data["layout_file"] = list(self.data.layout_files)
        data["options"] = dict(self.data.options)
        return {
            "data": data,
            "model": {"family": self.model.family, **self.model.hyperparameters},
            "training": asdict(self.training),
            "validation": dict(self.validation),
        }


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML config file.

    A missing file raises ``DataNotFoundError``. An unreadable file, a binary file (such as
    a data file passed in place of the config) or invalid TOML raises ``ConfigError`` with the path.
    """
    config_path = Path(path).expanduser()
    try:
        content = config_path.read_bytes()
    except FileNotFoundError:
        raise DataNotFoundError(
            f"config file {config_path} not found. Give the path of a TOML training config."
        ) from None
    except OSError as error:
        raise ConfigError(f"config file {config_path} cannot be read: {error.strerror or error}") from None
    try:
        text = content.decode("utf-8")
        if "\0" in text:
            raise ValueError("NUL character")
    except ValueError:
        raise ConfigError(
            f"config file {config_path} is not a TOML text file{_looks_like(content)}. "
            "Pass a TOML training config as CONFIG, and the data with --data."
        ) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        hint = ""
        if config_path.suffix.lower() in (".csv", ".root", ".parquet"):
            hint = ". It looks like a data file: pass a TOML training config as CONFIG, and the data with --data"
        raise ConfigError(f"config file {config_path} is not valid TOML: {error}{hint}") from None
    return parse_config(table, base_dir=config_path.resolve().parent, source=config_path.resolve())


def _looks_like(content: bytes) -> str:
    """Return " (it looks like a ROOT file)" and the like for known data-file signatures, else ""."""
    for signature, kind in DATA_FILE_SIGNATURES:
        if content.startswith(signature):
            return f" (it looks like {kind})"
    return ""


def parse_config(table: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> RunConfig:
    """Validate a config table as read by ``tomllib``.

    Relative data paths are resolved against ``base_dir``.
    """
    _reject_unknown(table, SECTIONS, prefix="")
    for name in ("data", "model"):
        if name not in table:
            raise ConfigError(f"config section [{name}] is missing. Add it (see sample_configs/ for examples).")
    for name in SECTIONS:
        if name in table and not isinstance(table[name], Mapping):
            raise ConfigError(f"{name} = {table[name]!r} is invalid: expected a table [{name}]")
    return RunConfig(
        data=_parse_data(table["data"], base_dir),
        model=_parse_model(table["model"]),
        training=_parse_training(table.get("training", {})),
        validation=_parse_validation(table.get("validation", {})),
        source=source,
    )


def _parse_validation(section: Mapping[str, Any]) -> dict[str, Any]:
    """Check the ``[validation]`` table with the validation stage's own parser and return it unchanged."""
    # Imported here, because the validation package imports torch and scipy.
    from cmsgen.engine.validation.report import ValidationSettings

    ValidationSettings.from_mapping(section)  # raises ConfigError naming an unknown key or a bad value
    return dict(section)


def _parse_data(section: Mapping[str, Any], base_dir: Path) -> DataConfig:
    _reject_unknown(section, DATA_KEYS, prefix="data.")
    if "paths" not in section:
        raise ConfigError("data.paths is missing: give a list of data files, directories or globs")
    raw_paths = section["paths"]
    if isinstance(raw_paths, str):
        raw_paths = [raw_paths]
    if not isinstance(raw_paths, list) or not raw_paths or not all(isinstance(p, str) and p for p in raw_paths):
        raise ConfigError(f"data.paths = {raw_paths!r} is invalid: expected a non-empty list of path strings")
    paths = tuple(_resolve_path(p, base_dir) for p in raw_paths)

    feature_set = section.get("feature_set", "dimuon")
    if not isinstance(feature_set, str) or not feature_set:
        raise ConfigError(f"data.feature_set = {feature_set!r} is invalid: expected a feature-set name string")
    options = section.get("options", {})
    if not isinstance(options, Mapping):
        raise ConfigError(f"data.options = {options!r} is invalid: expected a table of feature-set options")

    _check_feature_set(feature_set, dict(options))
    layout_files = _layout_files(section.get("layout_file"), base_dir)

    max_events = section.get("max_events")
    if max_events is not None:
        max_events = _integer("data.max_events", max_events, minimum=0)
        max_events = max_events or None  # 0 means every event
    dask = section.get("dask")
    if dask is not None:
        dask = _dask_address(dask)
    return DataConfig(
        paths=paths,
        feature_set=feature_set,
        options=dict(options),
        max_events=max_events,
        dask=dask,
        layout_files=layout_files,
    )


def _check_feature_set(name: str, options: dict[str, Any]) -> None:
    """Build the feature set once, and check that the training metric (the w1_mass) can be computed for it.

    Raises ConfigError naming ``data.feature_set`` or the ``data.options`` key at fault.
    """
    from cmsgen.engine.features import get_feature_set

    feature_set = get_feature_set(name, **options)  # raises ConfigError naming data.feature_set or data.options.<name>

    # The trainer selects the best checkpoint by the W1 distance of the invariant mass, so a
    # feature set that cannot give a mass fails here, not after the data is read. The trial row
    # of ones only exercises the column check of the mass function.
    import numpy as np

    from cmsgen.engine.output import invariant_mass

    row = np.ones((1, len(feature_set.columns)))
    try:
        if "mass" not in feature_set.observables(row):
            invariant_mass(row, feature_set.columns)
    except ConfigError as error:
        fields = set(options.get("fields") or ())
        if fields and not {"eta", "phi"} <= fields:
            key, advice = f"data.options.fields = {list(options['fields'])!r}", " Include pt, eta and phi."
        elif "n" in options:
            key, advice = f"data.options.n = {options['n']!r}", " Use n >= 2."
        else:
            key, advice = f"data.feature_set = {name!r}", ""
        raise ConfigError(
            f"{key} is invalid: the w1_mass metric that selects the best checkpoint needs the invariant "
            f"mass of at least two objects ({error.message}).{advice}"
        ) from None


def _layout_files(value: Any, base_dir: Path) -> tuple[str, ...]:
    """Return the layout TOML files of ``data.layout_file`` (a path or a list), resolved against ``base_dir``."""
    if value is None:
        return ()
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not all(isinstance(item, str) and item for item in files):
        raise ConfigError(
            f"data.layout_file = {value!r} is invalid: expected the path of a layout TOML file, or a list of them"
        )
    return tuple(str((base_dir / Path(item).expanduser()).resolve()) for item in files)


def _dask_address(value: Any) -> str:
    """Return ``value`` when it is "local" or a Dask scheduler address such as tcp://host:8786, else raise ConfigError."""
    if not isinstance(value, str) or not (value == "local" or "://" in value):
        raise ConfigError(
            f"data.dask = {value!r} is invalid: expected \"local\" or a Dask scheduler address such as tcp://host:8786"
        )
    return value


def _resolve_path(path: str, base_dir: Path) -> str:
    expanded = Path(path).expanduser()
    if expanded.is_absolute():
        return str(expanded)
    # A glob is joined to base_dir but not resolved or matched here, so it stays a pattern.
    if any(c in path for c in "*?["):
        return str(base_dir / expanded)
    return str((base_dir / expanded).resolve())


def _parse_model(section: Mapping[str, Any]) -> ModelConfig:
    family = section.get("family")
    if family is None:
        raise ConfigError(f"model.family is missing: expected one of {', '.join(MODEL_FAMILIES)}")
    if family not in MODEL_FAMILIES:
        raise ConfigError(f"model.family = {family!r} is invalid: expected one of {', '.join(MODEL_FAMILIES)}")
    hyperparameters = {key: value for key, value in section.items() if key != "family"}
    for key, value in hyperparameters.items():
        if not _is_plain(value):
            raise ConfigError(
                f"model.{key} = {value!r} is invalid: expected a number, string, boolean or a list of them"
            )
    # The model classes validate their own hyperparameters. Imported here, because they import torch.
    from cmsgen.engine.models import model_class
    from cmsgen.engine.models.base import resolve_hyperparameters

    resolve_hyperparameters(family, model_class(family).all_hyperparameters(), hyperparameters)
    return ModelConfig(family=family, hyperparameters=hyperparameters)


def _parse_training(section: Mapping[str, Any]) -> TrainingConfig:
    allowed = tuple(TrainingConfig.__dataclass_fields__)
    _reject_unknown(section, allowed, prefix="training.")
    defaults = TrainingConfig()
    value = {name: section.get(name, getattr(defaults, name)) for name in allowed}
    training = TrainingConfig(
        epochs=_integer("training.epochs", value["epochs"], minimum=1),
        batch_size=_integer("training.batch_size", value["batch_size"], minimum=1),
        lr=_real("training.lr", value["lr"], minimum=0.0, open_minimum=True),
        weight_decay=_real("training.weight_decay", value["weight_decay"], minimum=0.0),
        scheduler=_choice("training.scheduler", value["scheduler"], SCHEDULERS),
        seed=_integer("training.seed", value["seed"], minimum=0),
        device=_choice("training.device", value["device"], DEVICES),
        log_every=_integer("training.log_every", value["log_every"], minimum=1),
        val_fraction=_real("training.val_fraction", value["val_fraction"], minimum=0.0, open_minimum=True),
        test_fraction=_real("training.test_fraction", value["test_fraction"], minimum=0.0),
        metric_events=_integer("training.metric_events", value["metric_events"], minimum=10),
    )
    if training.val_fraction + training.test_fraction >= 1.0:
        raise ConfigError(
            f"training.val_fraction + training.test_fraction = "
            f"{training.val_fraction + training.test_fraction:g} is invalid: expected a sum below 1 "
            "so that events are left for training"
        )
    return training


def _reject_unknown(table: Mapping[str, Any], allowed: tuple[str, ...], *, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key} is not a known key: expected one of {', '.join(allowed)}")


def _integer(key: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} = {value!r} is invalid: expected an integer >= {minimum}")
    return value


def _real(key: str, value: Any, *, minimum: float, open_minimum: bool = False) -> float:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if valid:
        valid = value > minimum if open_minimum else value >= minimum
    if not valid:
        relation = ">" if open_minimum else ">="
        raise ConfigError(f"{key} = {value!r} is invalid: expected a finite number {relation} {minimum:g}")
    return float(value)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is invalid: expected one of {', '.join(allowed)}")
    return str(value)


def _is_plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    return False


def dumps_toml(table: Mapping[str, Any]) -> str:
    """Serialise nested tables of strings, numbers, booleans and lists as TOML.

    Only the types that configs use are supported, and a value of another type raises
    ``TypeError``. For supported tables, ``tomllib.loads(dumps_toml(t)) == t``.
    """
    lines: list[str] = []
    _write_table(lines, table, prefix="")
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(lines: list[str], table: Mapping[str, Any], prefix: str) -> None:
    scalars = {key: value for key, value in table.items() if not isinstance(value, Mapping)}
    subtables = {key: value for key, value in table.items() if isinstance(value, Mapping)}
    if prefix and (scalars or not subtables):
        lines.append("")
        lines.append(f"[{prefix}]")
    for key, value in scalars.items():
        if value is None:
            continue  # TOML has no null: an absent key means the default
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in subtables.items():
        _write_table(lines, value, prefix=f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key))


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return _toml_string(key)


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{escaped}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write a value of type {type(value).__name__} as TOML: {value!r}")
