"""The README's commands are the ones CI runs; package metadata stays consistent."""

import re
from pathlib import Path

import attnunet

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
    assert 'attnunet = "attnunet.cli:main"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert tests == "python -m pytest"


def test_ci_runs_the_readme_block():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "ci-commands" in ci and 'eval "${CMDS[2]}"' in ci
    assert "-eq 5" in ci  # pytest's "no tests collected" is handled


def test_version_and_metadata_agree():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert version is not None and version.group(1) == attnunet.__version__
    assert (ROOT / "attnunet" / "py.typed").is_file()
    assert (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").startswith("# Changelog")


def test_submodules_load_lazily():
    import subprocess
    import sys

    code = (
        "import sys, attnunet; "
        "assert 'attnunet.data' not in sys.modules and 'attnunet.metrics' not in sys.modules; "
        "assert 'timm' not in sys.modules; "
        "print(attnunet.data.load_sample('nuclei2d').image.shape, attnunet.metrics.dice_score)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "(512, 512)" in out.stdout


def test_metrics_and_losses_do_not_load_the_model_zoo():
    import subprocess
    import sys

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
