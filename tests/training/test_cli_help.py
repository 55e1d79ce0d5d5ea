"""Every training command answers --help: argparse expands '%' in help strings, so a bare percent sign
in one of them crashes --help (and only --help) with a ValueError."""
import importlib

import pytest

COMMANDS = ["train_age_gender", "train_emotion", "evaluate_age_gender", "evaluate_emotion", "export_runtime",
            "quantize_runtime", "split_ensemble", "checkpoint_status", "models_doc", "fer_bundle", "ablation_report"]


@pytest.mark.parametrize("name", COMMANDS)
def test_training_command_prints_its_help(name, capsys):
    module = importlib.import_module(f"training.{name}")
    entry = getattr(module, "parse_args", None) or module.main
    with pytest.raises(SystemExit) as stop:
        entry(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--help" in out
