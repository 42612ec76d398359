"""Bytes checked, not assumed: a corrupted DVC cache object checked out into the workspace passes
`dvc status`, so `make verify` must name it and its repair, the model file must refuse to load, and
`make push` must refuse to send it; the repair the messages name must work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import BIN, digit_images, dvc, make

pytestmark = pytest.mark.e2e


def locked_md5(repo: Path, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for s in lock["stages"].values() for o in s.get("outs", []) if o["path"] == path)


def flip_a_weight_byte(file: Path) -> None:
    """Flip one bit inside the largest tensor's stored bytes, as bit rot does: same size, inode and mtime
    (what DVC's state database checks), and torch.load still reads the file."""
    weights = torch.load(file, weights_only=True)["weights"]
    largest = max(weights.values(), key=torch.Tensor.numel)
    data = bytearray(file.read_bytes())
    at = data.find(largest.contiguous().numpy().tobytes()[:64])
    assert at > 0
    data[at + 5] ^= 0x10
    stat = file.stat()
    file.chmod(0o644)  # DVC keeps cache objects read-only
    file.write_bytes(bytes(data))
    file.chmod(stat.st_mode)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_corrupt_cache_object_is_named_refused_and_repaired(repo: Path, tmp_path: Path) -> None:
    images = " ".join(map(str, digit_images(repo, tmp_path / "digits")))
    dvc(repo, "remote", "add", "-d", "team", str(tmp_path / "team"))
    assert make(repo, "push").returncode == 0  # the team's remote holds the good copies
    good = locked_md5(repo, "models/lenet.pt")
    obj = repo / ".dvc" / "cache" / "files" / "md5" / good[:2] / good[2:]
    flip_a_weight_byte(obj)
    (repo / "models" / "lenet.pt").unlink()
    dvc(repo, "checkout", "models/lenet.pt")
    bad = subprocess.run(["md5sum", str(obj)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert "up to date" in dvc(repo, "status")  # DVC's bookkeeping does not see it

    verified = make(repo, "verify")
    assert verified.returncode != 0
    lines = verified.stdout.splitlines()
    at = lines.index("differs  models/lenet.pt  (train@lenet)")
    assert lines[at + 1 : at + 3] == [
        f"         md5 {bad} here, {good} in main's dvc.lock: the file was edited or damaged, and its DVC "
        f"cache object {obj} is bad (its md5 is {bad})",
        f"         repair: `rm -f {obj} models/lenet.pt`, then `make pull` or `dvc repro -f train@lenet`",
    ]
    assert lines[-1].endswith("each file hashed now; 1 does not: models/lenet.pt")

    refused = make(repo, "predict", "MODEL=lenet", f"IMAGES={images}")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith(
        "error: models/lenet.pt is corrupt: its contents no longer match the digest it was written with "
        "(fix: `make verify` names the bad copy and its DVC cache object; remove both, then `make pull` or "
        "`dvc repro -f train@lenet`)\n"
    )
    # the evaluate stage's own command, writing elsewhere (through DVC, the failure would delete its outputs)
    out = tmp_path / "evaluate"
    evaluated = subprocess.run(
        [str(BIN / "python"), "stages/evaluate.py", "--model-file", "models/lenet.pt",
         "--val", "data/processed/val.pt", "--test", "data/processed/test.pt", "--metrics", f"{out}/m.json",
         "--timing", f"{out}/t.json", "--predictions", f"{out}/p.csv", "--per-class", f"{out}/c.csv",
         "--logits", f"{out}/l.pt", "--env", f"{out}/e.json"],
        cwd=repo, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(repo / "src")},
    )  # fmt: skip
    assert evaluated.returncode == 2 and "error: models/lenet.pt is corrupt" in evaluated.stderr

    dvc(repo, "remote", "add", "-d", "empty", str(tmp_path / "empty"))
    pushed = make(repo, "push")
    assert pushed.returncode == 2
    assert pushed.stderr.startswith(
        "error: refusing to push: 1 DVC cache objects are corrupt and would reach the remote under their "
        f"good names: models/lenet.pt: its DVC cache object {obj} is bad (its md5 is {bad}), not {good} "
    )
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*"))

    # the repair, as the messages say it
    dvc(repo, "remote", "default", "team")
    obj.unlink()
    (repo / "models" / "lenet.pt").unlink()
    pulled = make(repo, "pull")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    repaired = make(repo, "verify")
    assert repaired.returncode == 0, repaired.stdout
    assert make(repo, "predict", "MODEL=lenet", f"IMAGES={images}").returncode == 0


def test_an_uncommitted_lock_is_pushed_with_a_warning(repo: Path, tmp_path: Path) -> None:
    dvc(repo, "remote", "add", "-d", "team", str(tmp_path / "team"))
    (repo / "dvc.lock").write_text((repo / "dvc.lock").read_text() + "\n")
    pushed = make(repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr.splitlines()[0] == (
        "warning: this workspace's dvc.lock is not the committed one: clones pull by the committed lock, so "
        "commit dvc.lock with metrics/ and plots/ to share this run"
    )
    assert pushed.stdout.splitlines()[-1] == (
        "DVC remote 'team' holds every output in this workspace's uncommitted dvc.lock"
    )
