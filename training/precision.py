"""Training in mixed bfloat16 on CPUs with bfloat16 units; every file a run writes stays float32.

On a Xeon with AMX the 96-px anti-aliased age/gender network trained 1.19x as fast with its
convolutions computed in bfloat16 (bench/train_step_precision.py). Weights, BatchNorm statistics
and the optimizer stay float32 (mixed precision), and so does everything from the trunk's global
pooling on (the heads: an age read from a softmax over 101 bins needs float32's digits). Without
bfloat16 units the CPU emulates it and is slower, so "auto" uses it only where /proc/cpuinfo lists
amx_bf16 or avx512_bf16.

The trained network is a twin of the float32 one: the same layers and weight variables, built from
a config whose layers ask for mixed_bfloat16. Every file written from it (last.keras, best.keras,
swa.keras, the run's checkpoint) is given float32 configs again, so that evaluation, export and
serving never compute in bfloat16 and a run can continue on a machine without bfloat16 units.

Off by default: a run in mixed bfloat16 hung twice in 26 epochs, each time where one epoch's data
iterator gives way to the next (training/watchdog.py restarts such a run); float32 runs never did.
"""
from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

MIXED = "mixed_bfloat16"
CHOICES = ("auto", "on", "off")
HEADS_FROM = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")   # this layer and all after: float32
CONFIG_ENTRY = "config.json"        # inside a Keras 3 .keras archive


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    from app.pipeline.predict import cpu_flags
    return bool(cpu_flags(cpuinfo) & {"amx_bf16", "avx512_bf16"})


def use_mixed_bfloat16(choice: str) -> bool:
    """--mixed-bfloat16 on/off, or auto: on where the CPU has bfloat16 units."""
    if choice not in CHOICES:
        raise ValueError(f"--mixed-bfloat16 {choice!r}: one of {', '.join(CHOICES)}")
    return choice == "on" or (choice == "auto" and cpu_has_bfloat16())


def _policy(name: str) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def float32_config(config):
    """A copy of a Keras config (dict, list or JSON-ready value) with every mixed_bfloat16 policy float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and config.get("config", {}).get("name") == MIXED:
            return _policy("float32")
        return {k: float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [float32_config(v) for v in config]
    return config


def float32_json(model_json: str) -> str:
    """model.to_json() with float32 layers throughout."""
    return json.dumps(float32_config(json.loads(model_json)))


def mixed_config(config: dict) -> dict:
    """A functional model's config with its trunk's layers in mixed_bfloat16 and the heads (from the first
    global pooling or flatten layer on, in the config's topological order) in float32."""
    config = copy.deepcopy(config)
    heads = False
    for layer in config["layers"]:
        heads = heads or layer["class_name"] in HEADS_FROM
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = _policy("float32" if heads else MIXED)
    return config


def mixed_twin(network):
    """The network rebuilt with a bfloat16 trunk, holding the same (float32) weights; uncompiled."""
    twin = network.__class__.from_config(mixed_config(network.get_config()))
    twin.set_weights(network.get_weights())
    return twin


def store_keras_float32(path: Path) -> None:
    """Rewrite the .keras file at `path` with float32 layer policies (weights and optimizer state as they are:
    the variables were float32 all along)."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            if info.filename == CONFIG_ENTRY:
                data = json.dumps(float32_config(json.loads(data))).encode()
            out.writestr(info, data)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


class Float32Files:
    """After each epoch, give the .keras files that Keras' ModelCheckpoint wrote from a mixed twin float32
    layer policies again (only files written since the last look)."""
    def __new__(cls, paths: list[Path]):
        import keras

        class _Float32Files(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seen = {}

            def on_epoch_end(self, epoch, logs=None):
                for path in map(Path, paths):
                    if path.exists() and self.seen.get(path) != path.stat().st_mtime_ns:
                        store_keras_float32(path)
                        self.seen[path] = path.stat().st_mtime_ns
        return _Float32Files()


def file_policies(path: Path) -> set[str]:
    """The layer policies a .keras file's config names (for checks)."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read(CONFIG_ENTRY))
    return policies_in(config)


def policies_in(config) -> set[str]:
    found = set()
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            found.add(config["config"]["name"])
        for v in config.values():
            found |= policies_in(v)
    elif isinstance(config, list):
        for v in config:
            found |= policies_in(v)
    return found


def add_option(parser) -> None:
    parser.add_argument("--mixed-bfloat16", choices=CHOICES, default="off",
                        help="compute the trunk in bfloat16 (weights, heads and files float32); auto: where the CPU "
                             "has bfloat16 units (amx_bf16, avx512_bf16). Not run-defining: a run may change it "
                             "between sessions, and its checkpoint records from which epoch each precision ran")


def precision_history(checkpoint: Path | None, done: int, policy: str) -> dict[str, str]:
    """{first epoch: policy} of the run so far (from its checkpoint file's settings), with this session's
    policy added where it changes from epoch done + 1 on."""
    history: dict[str, str] = {}
    if checkpoint is not None and Path(checkpoint).exists() and done:
        from training.common import load_run_checkpoint
        history = dict(load_run_checkpoint(checkpoint)[1]["settings"].get("precision_from_epoch") or {"1": "float32"})
    if not history or list(history.values())[-1] != policy:
        history[str(done + 1)] = policy
    return history


def run_precision(run: dict) -> dict[str, str]:
    """For the card: {first epoch: policy} of a run from its run.json (runs before the option: float32)."""
    return run.get("precision_from_epoch") or {"1": "float32"}


def train_in_chosen_precision(model, choice: str, checkpoint: Path | None, done: int, settings: dict):
    """The model to train (model itself, or its mixed twin: uncompiled, so its optimizer starts afresh, as
    after a resume from the checkpoint file) and whether it is mixed; records the run's precision history
    in `settings` (which its checkpoint file carries)."""
    mixed = use_mixed_bfloat16(choice)
    settings["precision_from_epoch"] = precision_history(checkpoint, done, MIXED if mixed else "float32")
    if mixed:
        print(f"training in {MIXED} from epoch {done + 1} (trunk in bfloat16; weights, heads and files float32)",
              flush=True)
        return mixed_twin(model), True
    return model, False
