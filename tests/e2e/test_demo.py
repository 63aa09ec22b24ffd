"""`make demo`'s path end to end: CR -> stage-1 Job -> train.py -> checkpoints in UFile -> stage 2 -> caption.

The real operator process, trainer and storage commands, on the stand-ins (API emulator, local kubelet,
UFile server). This is the test that the parts fit together as the contracts say.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^demo\s+(?P<stage>[12])\s+(?P<phase>\w+)\s+(?P<step>\d+)?\s", re.M)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_both_stages_and_captions(tmp_path: Path) -> None:
    public, private = f"e2e-pub-{secrets.token_hex(6)}", f"e2e-priv-{secrets.token_hex(16)}"
    env = {**os.environ, "DEMO_UFILE_PUBLIC_KEY": public, "DEMO_UFILE_PRIVATE_KEY": private,
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "im2txt_standins.demo", "--work", str(tmp_path / "demo"),
                           "--timeout", "600"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=800)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]

    rows = [(int(m["stage"]), m["phase"], int(m["step"]) if m["step"] else None) for m in ROW.finditer(out)]
    # Live progress in both stages, stage 2 after stage 1, and the end state.
    assert any(s == 1 and p == "Running" and step and 0 < step < 200 for s, p, step in rows), out
    assert any(s == 2 and p == "Running" and step and 200 <= step < 300 for s, p, step in rows), out
    first_stage2 = next(i for i, r in enumerate(rows) if r[0] == 2)
    assert all(r[0] == 1 for r in rows[:first_stage2]) and all(r[0] == 2 for r in rows[first_stage2:])
    assert rows[-1] == (2, "Succeeded", 300)

    # The output path ends with the stage-2 target. (Which older checkpoints are still listed depends on how
    # many the keep-5 rotation wrote, i.e. on the machine's speed, so the test does not look for them.)
    assert "uai/im2txt/output/model.ckpt-300.index" in out
    assert "uai/im2txt/output/checkpoint" in out
    # Every UFile request of fetch, sync, mirror and export went over HTTPS (the stand-in's CA trusted).
    tls = re.search(r"^   UFile: (\d+) requests from the pods, (\d+) of them over HTTPS$", out, re.M)
    assert tls and int(tls[1]) > 0 and tls[1] == tls[2], out[-3000:]
    # The export Job wrote a SavedModel after stage 2 (its version is the final global step), and the caption
    # comes from it.
    assert re.search(r"^export: Succeeded: SavedModel written to ufile://demo-bucket/uai/im2txt/output/export/", out,
                     re.M), out[-3000:]
    assert "uai/im2txt/output/export/300/saved_model.pb" in out
    caption = out.split("through the exported SavedModel", 1)[1]
    assert re.search(r"^\s+0\) a red circle \(p=", caption, re.M), out[-1500:]

    # The evaluation beside training gave each stage's last checkpoint a validation perplexity (the PPL column and
    # status.evaluation), stage 2's after the training ended; the eval summaries went to the output's eval/ folder.
    finals = re.search(r"^evaluation \(validation perplexity, the reference formula\): stage 1: perplexity "
                       r"([\d.]+) at step 200; stage 2: perplexity ([\d.]+) at step 300$", out, re.M)
    assert finals, out[-3000:]
    assert all(1.0 < float(p) < 20 for p in finals.groups())  # learnt captions: far below the vocabulary's size
    header = next(ln for ln in out.splitlines() if ln.startswith("NAME") and "PPL" in ln)
    ppl = [ln[header.index("PPL"):header.index("MESSAGE")].strip() for ln in out.splitlines() if ROW.match(ln)]
    assert any(re.fullmatch(r"\d+\.\d+", cell) for cell in ppl), out  # the PPL column while it trains
    assert "uai/im2txt/output/eval/events.out.tfevents." in out
    assert "uai/im2txt/output/export/300/evaluation.json" in out  # the exported checkpoint's figures beside it

    # Stage 2 ran without the Inception file, from stage 1's last checkpoint (its target, global step 200),
    # which it fetched from the output path.
    stage2_logs = list((tmp_path / "demo" / "node" / "pods" / "default").glob("demo-stage2-*/logs/trainer.log"))
    stage2_log = "".join(p.read_text() for p in stage2_logs)
    assert re.search(r"resumed from \S*/model\.ckpt-200 at global step 200$", stage2_log, re.M), stage2_log[-3000:]
    assert "InceptionV3 variables from" not in stage2_log, stage2_log[-3000:]

    # The key pair went only through the Secret: no log or file the run wrote holds it.
    for path in (tmp_path / "demo").rglob("*"):
        if path.is_file() and "ufile" not in path.relative_to(tmp_path / "demo").parts[:1]:
            data = path.read_bytes()
            assert private.encode() not in data and public.encode() not in data, path
    assert private not in out + proc.stderr and public not in out + proc.stderr
