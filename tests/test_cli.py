"""The ``interp`` command line: options, defaults, list parsing, quiet, stale figures, wall time, light --help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import interp
from interp.cli import app
from interp.cli.options import default_out, parse_list, safe_name
from interp.errors import InterpError

REPO = Path(__file__).resolve().parents[1]
LOADING_COMMANDS = ("induction", "pattern", "importance", "dynamics", "prune heads", "prune ffns", "prune combined",
                    "prune layers", "prune laser")


def _command(path: str) -> click.Command:
    command = typer.main.get_command(app)
    for name in path.split():
        command = command.commands[name]
    return command


def _options(path: str) -> set[str]:
    return {name for parameter in _command(path).params for name in parameter.opts}


def _python(code: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=600)


# --------------------------------------------------------------------------- the one list parser


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("0-3,10", int, (0, 1, 2, 3, 10)),
    (" 5 , 1,5", int, (5, 1)),  # order kept, repeats dropped
    ("0-1", int, (0, 1)),
    ("0.9,0.05", float, (0.9, 0.05)),
    ("own, random:3 ,", str, ("own", "random:3")),
])
def test_parse_list_reads_lists_and_ranges(text, kind, expected):
    assert parse_list("--option", text, kind) == expected


@pytest.mark.parametrize(("text", "kind", "message"), [
    (",", int, "--option ',' is empty"),
    ("", str, "is empty"),
    ("3-1", int, "'3-1' is not an increasing range"),
    ("1,x", int, "'x' is not one of the integers"),
    ("0-3", float, "'0-3' is not one of the numbers"),
])
def test_parse_list_rejects_empty_and_bad_items_in_one_line(text, kind, message):
    with pytest.raises(InterpError, match=re.escape(message)) as caught:
        parse_list("--option", text, kind)
    assert "\n" not in str(caught.value)


def test_default_out_is_one_safe_folder_per_model(tmp_path):
    local = tmp_path / "my model"
    local.mkdir()
    assert default_out("toy-attn-2l") == Path("results/toy-attn-2l")
    assert safe_name("facebook/opt-125m") == "facebook--opt-125m"
    assert safe_name(str(local)) == "my-model"  # a local directory: its own name, made safe
    assert safe_name(str(tmp_path / "weights.Q4.gguf")) == "weights.Q4"
    assert safe_name("../x") == "x" and safe_name("///") == "model"


# --------------------------------------------------------------------------- the shape of the app


def test_version_and_help_import_nothing_heavy():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"interp {interp.__version__}"
    code = ("import sys\nfrom interp.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit as exit:\n"
            "    assert exit.code == 0, exit.code\n"
            "heavy = ('torch', 'transformers', 'transformer_lens', 'pandas', 'plotly')\n"
            "print(sorted(name for name in heavy if name in sys.modules))")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "prune" in done.stdout and "induction" in done.stdout


def test_prune_studies_show_only_their_own_options():
    heads, laser, layers = _options("prune heads"), _options("prune laser"), _options("prune layers")
    assert {"--percents", "--rankings", "--results", "--ablation"} <= heads
    assert not heads & {"--rhos", "--matrices", "--layers", "--block-sizes", "--distance-source", "--text-windows",
                        "--head-percents", "--ffn-percents"}
    assert {"--rhos", "--matrices", "--layers"} <= laser and not laser & {"--percents", "--rankings", "--block-sizes"}
    assert {"--block-sizes", "--distance-source"} <= layers and not layers & {"--rhos", "--percents", "--layers"}
    combined = _options("prune combined")
    assert {"--head-percents", "--ffn-percents"} <= combined and "--percents" not in combined
    result = CliRunner().invoke(app, ["prune", "heads", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--rhos" not in result.output and "--block-sizes" not in result.output


def test_every_model_loading_command_takes_device_dtype_device_map_and_out():
    for path in LOADING_COMMANDS:
        options = _options(path)
        assert {"--device", "--dtype", "--device-map"} <= options, path
        assert {"--out", "--results"} & options, path


def test_compare_writes_under_results_by_default():
    out = next(parameter for parameter in _command("compare").params if parameter.name == "out")
    assert Path(out.default) == Path("results/comparison")


class _LoadCalled(Exception):
    pass


@pytest.mark.parametrize("path", LOADING_COMMANDS)
def test_device_dtype_and_device_map_reach_load_model(path, monkeypatch, tmp_path):
    import interp.models.loading

    seen = {}

    def fake_load_model(spec, **options):
        seen.update(options, spec=spec)
        raise InterpError("stopped before loading")

    monkeypatch.setattr(interp.models.loading, "load_model", fake_load_model)
    arguments = path.split() + ["--device", "cpu", "--dtype", "bfloat16", "--device-map", "auto"]
    if path == "dynamics":
        checkpoint = tmp_path / "run" / "checkpoints" / "step_000010"
        checkpoint.mkdir(parents=True)
        (checkpoint / "model.safetensors").touch()
        arguments += ["--run", str(tmp_path / "run")]
    elif path == "pattern":
        arguments += ["--layer", "0", "--head", "0", "--results", str(tmp_path), "--model", "toy-attn-2l"]
    else:
        arguments += ["--model", "toy-attn-2l", "--out", str(tmp_path)]
        if path != "induction":
            arguments += ["--tasks", "antonyms", "--shots", "0"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2 and "stopped before loading" in result.output, result.output
    # a Placement where max-memory is an option
    device_map = getattr(seen["device_map"], "device_map", seen["device_map"])
    assert seen["device"] == "cpu" and seen["dtype"] == "bfloat16" and device_map == "auto", seen


@pytest.mark.parametrize("arguments", [
    ["importance", "--shots", ","],
    ["prune", "heads", "--shots", ","],
    ["prune", "laser", "--rhos", " , "],
    ["prune", "layers", "--block-sizes", ","],
])
def test_empty_lists_are_refused_with_one_line(arguments, tmp_path):
    common = ["--model", "toy-attn-2l", "--tasks", "antonyms", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*arguments, *common])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "is empty" in result.output and "Traceback" not in result.output


def test_prune_laser_takes_a_layer_range(tiny_model_dirs, task_file, tmp_path):
    common = ["--model", str(tiny_model_dirs["opt"]), "--tasks", str(task_file), "--shots", "1", "--out", str(tmp_path),
              "--max-items", "5", "--n-choices", "2", "--no-figures", "--device", "cpu"]
    result = CliRunner().invoke(app, ["prune", "laser", *common, "--rhos", "0.5", "--matrices", "mlp_out",
                                      "--layers", "0-1"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "laser.parquet")
    assert set(table.loc[table["layer"] >= 0, "layer"]) == {0, 1}


# --------------------------------------------------------------------------- a whole run of the toy model


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """``interp induction`` on the shipped toy model without --out, from an empty working directory."""
    folder = tmp_path_factory.mktemp("cwd")
    stale = folder / "results" / "toy-attn-2l" / "figures"
    stale.mkdir(parents=True)
    for name in ("prefix_matching_mean.html", "prefix_matching_mean.png", "repeated_loss.html", "laser_mlp_in.html"):
        (stale / name).write_text("an older run's figure")
        os.utime(stale / name, (time.time() - 3600, time.time() - 3600))
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        began = time.perf_counter()
        result = CliRunner().invoke(app, ["induction", "--model", "toy-attn-2l", "--seeds", "2", "--protocol", "olsson",
                                          "--no-figures", "--device", "cpu"])
        elapsed = time.perf_counter() - began
    finally:
        os.chdir(cwd)
    return folder, result, elapsed


def test_a_toy_run_without_out_writes_only_its_own_folder(toy_run):
    folder, result, _ = toy_run
    assert result.exit_code == 0, result.output
    assert (folder / "results" / "toy-attn-2l" / "induction_scores.parquet").exists()
    assert sorted(path.name for path in (folder / "results").iterdir()) == ["toy-attn-2l"]


def test_no_figures_removes_only_this_jobs_figures_of_an_older_run(toy_run):
    folder, result, _ = toy_run
    figures = folder / "results" / "toy-attn-2l" / "figures"
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in figures.iterdir()) == ["laser_mlp_in.html"]  # another job's figure stays


def test_the_printed_wall_time_covers_the_whole_command(toy_run):
    folder, result, elapsed = toy_run
    assert result.output.rstrip().splitlines()[-1].startswith("wall time")
    whole = float(re.search(r"wall time ([\d.]+) s \(the whole command\)", result.output).group(1))
    metadata = json.loads((folder / "results" / "toy-attn-2l" / "induction_metadata.json").read_text())
    job = metadata.get("wall_time_s") or metadata.get("timing", {}).get("total_seconds")  # the job's own count
    assert job is not None and job <= whole <= elapsed + 0.05


def test_the_console_script_counts_from_the_interpreters_start():
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "interp.cli", "models"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    elapsed = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    whole = float(re.search(r"wall time ([\d.]+) s \(the whole command\)", done.stdout).group(1))
    assert 0.5 * elapsed <= whole <= elapsed  # start-up and imports (most of this command) are counted


def test_quiet_prints_nothing_but_errors(tmp_path):
    code = ("from interp.cli import app\ntry:\n"
            "    app(['--quiet', 'induction', '--model', 'toy-attn-2l', '--seeds', '2', "
            f"'--protocol', 'olsson', '--no-figures', '--device', 'cpu', '--out', {str(tmp_path / 'out')!r}])\n"
            "except SystemExit as exit:\n    raise SystemExit(exit.code)\n")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert (tmp_path / "out" / "induction_scores.parquet").exists()
    failed = _python(code.replace("toy-attn-2l", "no-such-model"))
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1


@pytest.mark.parametrize("command, message", [
    ("ablate", "holds no causal.json"),
    ("importance", "holds no intact importance.json"),
])
def test_merging_folders_that_are_not_runs_is_one_line(command, message, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = CliRunner().invoke(app, [command, "--merge", str(tmp_path / "a"), "--merge", str(tmp_path / "b"),
                                      "--out", str(tmp_path / "merged")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
