"""The README's commands are the ones CI runs; package metadata stays consistent."""

import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import attnunet
import attnunet.cli

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- ci-commands.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert block is not None, "README.md lost its ci-commands block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_install_main_job_and_tests():
    install, main_job, tests = _readme_commands()
    assert install.startswith("python -m pip install") and "[test]" in install
    assert main_job == "attnunet compare"
    assert tests == "python -m pytest"
    # the main job's command is the installed console script, and it runs attnunet's CLI
    scripts = [ep for ep in entry_points(group="console_scripts") if ep.name == "attnunet"]
    assert len(scripts) == 1, "the attnunet console script is not installed (pip install -e .)"
    assert scripts[0].load() is attnunet.cli.main


def _ci_step(ci: str, first: str, last: str) -> str:
    """The lines of ``.ci/run`` from the one starting with ``first`` to the next one
    starting with ``last``, both included."""
    lines = ci.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(first)), None)
    assert start is not None, f".ci/run has no line starting with {first!r}"
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(last)), None)
    assert end is not None, f".ci/run has no line starting with {last!r} after {first!r}"
    return "\n".join(lines[start : end + 1])


def test_ci_runs_the_readme_commands():
    """CI's own code, run here: its parser reads the README's three commands, and its test
    step runs the third, failing on pytest's "no tests collected" (exit code 5) as on any
    failure."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    parser = re.search(r"<<'PY'\n(.*?)\nPY\n", ci, re.S)
    assert parser is not None, ".ci/run no longer reads the README with a python snippet"
    out = subprocess.run(
        [sys.executable, "-c", parser.group(1)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    readme = [c for c in _readme_commands() if not c.startswith("#")]
    assert out.stdout.splitlines() == readme
    step = _ci_step(ci, 'echo "== tests:', '[ "$rc" -eq 0 ]')
    for code, expected in ((0, 0), (1, 1), (5, 1)):
        script = f'CMDS=(install main "(exit {code})")\n{step}\nexit "$rc"\n'
        run = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
        assert run.returncode == expected, (code, run.stdout, run.stderr)
        assert f"== tests: (exit {code})" in run.stdout  # it ran the third command
    assert "collected no tests" in run.stderr


def test_version_has_one_source():
    """pyproject.toml reads the version from ``attnunet.__version__``; installed metadata agrees."""
    from importlib.metadata import version

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: check the two settings textually
        assert re.search(r'^dynamic = \[[^]]*"version"', pyproject, re.M), "version not dynamic"
        assert re.search(r'^version = \{ ?attr = "attnunet.__version__" ?\}', pyproject, re.M)
    else:
        config = tomllib.loads(pyproject)
        assert "version" not in config["project"], "pyproject.toml writes the version again"
        assert "version" in config["project"].get("dynamic", [])
        dynamic = config["tool"]["setuptools"]["dynamic"]["version"]
        assert dynamic == {"attr": "attnunet.__version__"}
    # the installed distribution (pip install -e .) was built from the same attribute; a
    # stale install or a second version string would show here
    assert version("attnunet") == attnunet.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", attnunet.__version__)
    assert (ROOT / "attnunet" / "py.typed").is_file()
    assert (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").startswith("# Changelog")


def test_submodules_load_lazily():

    code = (
        "import sys, attnunet; "
        "assert 'attnunet.data' not in sys.modules and 'attnunet.metrics' not in sys.modules; "
        "assert 'timm' not in sys.modules; "
        "print(attnunet.data.load_sample('nuclei2d').image.shape, attnunet.metrics.dice_score)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "(512, 512)" in out.stdout


def test_metrics_and_losses_do_not_load_the_model_zoo():

    code = (
        "import sys; import attnunet.metrics, attnunet.losses; "
        "zoo = [m for m in sys.modules if m.startswith(('attnunet.models', 'attnunet.blocks'))]; "
        "assert not zoo, zoo; "
        "from attnunet import create_model; "
        "assert type(create_model('unet', channels=(2, 4))).__name__ == 'UNet'"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_every_public_name_resolves():
    for name in attnunet.__all__:
        assert getattr(attnunet, name) is not None, name


def _eager_rows(path: str) -> dict[tuple[str, str], dict]:
    """The ``eager`` rows of a benchmark JSON by (workload name, model key)."""
    import json

    rows = json.loads((ROOT / path).read_text(encoding="utf-8"))["rows"]
    return {(r["name"], r["model_key"]): r for r in rows if r["setting"] == "eager"}


def test_readme_speed_table_matches_the_benchmark_json():
    """Every ratio in the README's speed tables is the rounded figure of the JSON it cites:
    GFLOP/s against MONAI's AttentionUnet as shipped for four attnunet models, and the
    time ratio of PlainConvUNet to attnunet's UNet configured identically. The shipped
    table comes from the first file cited (W2 from the second); the rows timed one
    process per model, and the sentence on the second such run, from the files named
    ``models-cpu-w1-isolated*.json``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Speed and memory") : text.index("## The command line")]
    cited = re.findall(r"`(benchmarks/results/[\w.-]+\.json)`", section)
    assert len(cited) >= 5, "the README's speed section names its five results files"
    first, w2 = _eager_rows(cited[0]), _eager_rows(cited[1])
    run = {
        n: _eager_rows(f"benchmarks/results/models-cpu-w1-isolated{s}.json")
        for n, s in (("1", ""), ("2", "-2"), ("3", "-3"))
    }
    for rows in run.values():
        assert {r["process"] for r in rows.values()} == {"isolated"}
    models = ["attention_unet", "ag_unet", "unet", "ag_res_unet"]
    names = {"W1 train 2D": first, "W2 train 3D": w2, "W3 infer 2D": first}
    checked = 0
    for label, cells in re.findall(r"^\| (W\d [^|]+)\|(.*)$", section, re.M):
        label = label.strip()
        isolated = re.fullmatch(r"W1 train 2D, one process per model, run (\d)", label)
        if isolated:
            name, rows = "W1 train 2D", run[isolated.group(1)]
        else:
            name = label if label in names else "W3 infer 3D sliding"
            rows = names.get(name, first)
        values = [float(c.strip().strip("*x ")) for c in cells.strip("|").split("|")]
        assert len(values) == len(models) + 1, label
        for model, value in zip(models, values, strict=False):
            assert round(rows[(name, model)]["gflops_vs_monai_attention_unet"], 2) == value, (
                label,
                model,
            )
            checked += 1
        plain = rows[(name, "unet_nnunet_config")]["speed_vs_plain_conv_unet"]
        assert round(plain, 2) == values[-1], (label, "vs PlainConvUNet")
        checked += 1
    assert checked == 6 * 5
    found = re.search(
        r"isolated-2\.json`, timed five models and gave\s+AgResUNet ([\d.]+)x, the UNet "
        r"([\d.]+)x and ([\d.]+)x against PlainConvUNet",
        section,
    )
    assert found is not None, "the README's second isolated run lost its figures"
    second = {key[1]: r for key, r in run["2"].items()}
    assert [float(v) for v in found.groups()] == [
        round(second["ag_res_unet"]["gflops_vs_monai_attention_unet"], 2),
        round(second["unet"]["gflops_vs_monai_attention_unet"], 2),
        round(second["unet_nnunet_config"]["speed_vs_plain_conv_unet"], 2),
    ]
    ratios = [
        run[n][("W1 train 2D", "ag_res_unet")]["gflops_vs_monai_attention_unet"] for n in "123"
    ]
    assert f"reached {min(ratios):.2f}-{max(ratios):.2f}x in three runs" in section
    tuned = _eager_rows("benchmarks/results/models-cpu-w1-isolated-tuned-malloc.json")
    assert tuned[("W1 train 2D", "ag_res_unet")]["minor_faults_per_step"] < 100
    found = re.search(r"isolated-tuned-malloc\.json`\) it was\s+([\d.]+)x", section)
    assert found is not None, "the README's fault-free run lost its figure"
    ratio = tuned[("W1 train 2D", "ag_res_unet")]["gflops_vs_monai_attention_unet"]
    assert float(found.group(1)) == round(ratio, 2)


_MARKERS_PLUGIN = """
def pytest_collection_finish(session):
    for item in session.items:
        names = sorted({mark.name for mark in item.iter_markers()})
        print("MARKS", item.nodeid, ",".join(names))
"""


def _markers(files: list[str], tmp_path: Path) -> dict[str, set[str]]:
    """The markers of every test collected from ``files``, by node id, as the test run
    sees them (file markers from conftest.py included): one collection, in a subprocess."""
    (tmp_path / "markers_dump.py").write_text(_MARKERS_PLUGIN, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    collect = ["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "markers_dump"]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *collect, *files],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    marks = {}
    for line in out.stdout.splitlines():
        if line.startswith("MARKS "):
            _, node, names = [*line.split(" ", 2), ""][:3]
            marks[node] = set(filter(None, names.split(",")))
    return marks


def _select(marks: dict[str, set[str]], keep) -> list[str]:
    return [node for node, names in marks.items() if keep(names)]


def _files(ids: list[str]) -> set[str]:
    return {node.split("::")[0] for node in ids}


def _zoo(ids: list[str]) -> set[str]:
    """The test functions of tests/test_zoo.py among ``ids``."""
    return {n.split("::")[1].split("[")[0] for n in ids if n.startswith("tests/test_zoo.py")}


def test_markers_select_groups_across_files(tmp_path):
    """Whole files by their name (export, compile), single tests by their marker (the zoo
    tester's cases, CUDA-only tests)."""
    files = [
        "tests/test_export.py",
        "tests/test_compile.py",
        "tests/test_metrics.py",
        "tests/test_zoo.py",
    ]
    marks = _markers(files, tmp_path)
    assert _files(list(marks)) == set(files)
    exported = _select(marks, lambda m: "export" in m)
    assert _files(exported) == {"tests/test_export.py", "tests/test_zoo.py"}
    assert _zoo(exported) == {
        "test_torchscript_matches_eager",
        "test_torchscript_of_deep_supervision_matches_eager",
        "test_torch_export_matches_eager",
    }
    compiled = _select(marks, lambda m: "compile" in m)
    assert _files(compiled) == {"tests/test_compile.py", "tests/test_zoo.py"}
    assert _zoo(compiled) == {"test_torch_compile_matches_eager"}
    # every registered model is compiled (the zoo's ids are "test[name-Nd]")
    zoo_compiled = {n.split("[")[1].rsplit("-", 1)[0] for n in compiled if "test_zoo" in n}
    assert zoo_compiled == set(attnunet.list_models())
    assert all("slow" in marks[n] for n in compiled)
    cuda = _select(marks, lambda m: "cuda" in m)
    assert _files(cuda) == {"tests/test_metrics.py", "tests/test_zoo.py"}
    assert _zoo(cuda) == {"test_cuda_matches_cpu"}
    rest = _select(marks, lambda m: not m & {"export", "compile"})
    assert _files(rest) == {"tests/test_metrics.py", "tests/test_zoo.py"}
    assert not _zoo(rest) & (_zoo(exported) | _zoo(compiled))
    assert "test_forward_and_backward" in _zoo(rest)
