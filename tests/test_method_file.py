"""A method that lives outside the package runs without editing oodbench: --method-file and entry points."""

from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from typer.testing import CliRunner

import methods
from benchmark.cli import app
from benchmark.errors import OodbenchError
from benchmark.results import is_scores_file, read_results, validate_frame

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "method_template.py"


@pytest.mark.slow
def test_template_runs_end_to_end_on_the_demo(tmp_path, demo_run):
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--suite",
            "fmnist-ood",
            "--backbone",
            "oodbench-tiny-fmnist:demo",
            "--method-file",
            str(TEMPLATE),
            "--method",
            "my_prompt_bias",
            "--shots",
            "2",
            "--scores",
            "mcm,gl_mcm",
            "--config",
            "epochs=3",
            "--results-dir",
            str(tmp_path / "r"),
            "--cache-dir",
            str(demo_run["cache_dir"]),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    files = [f for f in (tmp_path / "r").rglob("*my_prompt_bias*__k2__s1__*.parquet") if not is_scores_file(f)]
    assert len(files) == 1
    rows = read_results(files[0])
    assert validate_frame(rows) == []
    assert set(rows["score"]) == {"mcm", "gl_mcm"} and set(rows["method"]) == {"my_prompt_bias"}
    cfg = json.loads(rows["method_config"].iloc[0])
    assert cfg["epochs"] == 3 and cfg["views"] == 4  # the view count is recorded in every row
    assert rows["fewshot_hash"].iloc[0]


def test_method_file_that_registers_nothing_is_a_clear_error(tmp_path):
    f = tmp_path / "empty_method.py"
    f.write_text("x = 1\n")
    with pytest.raises(OodbenchError, match="registered no method"):
        methods.load_method_file(f)


def test_missing_method_file_is_a_clear_error(tmp_path):
    with pytest.raises(OodbenchError, match="does not exist"):
        methods.load_method_file(tmp_path / "nope.py")


def test_entry_point_plugin_is_registered(tmp_path, monkeypatch):
    pkg = tmp_path / "oodbench_plugin_demo.py"
    pkg.write_text(TEMPLATE.read_text().replace('"my_prompt_bias"', '"plugin_prompt_bias"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="plugin_prompt_bias", value="oodbench_plugin_demo", group=methods.ENTRY_POINT_GROUP)
    monkeypatch.setattr(methods, "entry_points", lambda group: [ep] if group == methods.ENTRY_POINT_GROUP else [])
    methods.reload_plugins()
    try:
        methods.load_methods()
        assert "plugin_prompt_bias" in methods.METHODS
    finally:
        methods.METHODS.remove("plugin_prompt_bias")
        sys.modules.pop("oodbench_plugin_demo", None)
        methods.reload_plugins()


def test_broken_entry_point_is_a_clear_error(monkeypatch):
    ep = EntryPoint(name="broken", value="no_such_module_for_oodbench", group=methods.ENTRY_POINT_GROUP)
    monkeypatch.setattr(methods, "entry_points", lambda group: [ep])
    methods.reload_plugins()
    with pytest.raises(OodbenchError, match="broken"):
        methods.load_methods()
    methods.reload_plugins()


def test_a_failing_method_file_is_one_paragraph_and_debug_shows_the_traceback(tmp_path, run_cli, monkeypatch):
    f = tmp_path / "broken_method.py"
    f.write_text("def helper():\n    raise RuntimeError('the author made a mistake')\n\nhelper()\n")
    args = [
        "run",
        "--suite",
        "fmnist-ood",
        "--backbone",
        "oodbench-tiny-fmnist:demo",
        "--method",
        "x",
        "--method-file",
        str(f),
    ]
    monkeypatch.setenv("OODBENCH_DEBUG", "0")  # and restored afterwards: --debug sets it for the process
    code, _, err = run_cli(*args)
    assert code == 2
    assert "RuntimeError: the author made a mistake" in err and "--debug" in err
    assert "Traceback" not in err
    code, _, err = run_cli("--debug", *args)
    assert code == 2
    assert "Traceback" in err and "line 2, in helper" in err and "broken_method.py" in err


def test_the_template_config_round_trips_through_its_canonical_json():
    """A tuple field (the template's weight_decays) becomes a JSON list in every row; make_config reads it back."""
    from methods.base import canonical_config, make_config

    if "my_prompt_bias" not in methods.METHODS:  # an earlier test may have loaded the template already
        methods.load_method_file(TEMPLATE)
    cls = methods.METHODS.get("my_prompt_bias")
    config = make_config(cls, {"weight_decays": [0.0, 0.5]})
    assert config.weight_decays == (0.0, 0.5)
    assert make_config(cls, json.loads(canonical_config(config))) == config
