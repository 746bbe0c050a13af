"""The SLURM profile (workflow/profiles/slurm) against a real one-node SLURM cluster started by the test.

A tiny simulated trial runs its cheap steps (validate, then alignment and prepare: real ``qialign``
commands, no model sampling) through sbatch; the scheduler's own record of each job (``scontrol show
job``; there is no accounting database) must carry the rule's threads, mem_mb and runtime. A fast dry
run checks that the profile parses and plans the shipped default trial without a scheduler.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import slurm_cluster  # noqa: F401 - the fixture
from tiny_project import tiny_project

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"
PROFILE = "workflow/profiles/slurm"
TRIAL_ID = "tiny_slurm"
TARGETS = [
    f"results/{TRIAL_ID}/validation.txt",
    f"results/{TRIAL_ID}/alignment/scores.csv",
    f"results/{TRIAL_ID}/y_bin/prepared.json",
]
# Two levels of jobs, not three (crosscheck after these): each SLURM job starts Snakemake twice (the
# jobstep, then srun) and the plugin's status polls back off by 10 s, so a level costs 20-40 s here.
# one rule at 2 threads, so that --cpus-per-task is seen to follow the rule (the node has 2 CPUs;
# validate runs alone, so this does not serialise the two jobs that follow it)
THREADS_OVERRIDE = {"validate": 2}


def test_profile_dry_run_plans_default_trial():
    """The profile parses and, from the repo root, plans every job of the shipped config (no scheduler)."""
    profile = yaml.safe_load((ROOT / PROFILE / "profile.yaml").read_text())
    assert profile["executor"] == "slurm"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    dry = subprocess.run(
        [str(SNAKEMAKE), "-n", "--forceall", "--workflow-profile", PROFILE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "This was a dry-run" in out
    for rule in ("validate", "prepare", "alignment", "fit", "crosscheck", "collect", "report"):
        assert re.search(rf"^{rule}\s+\d+\s*$", out, re.M), f"dry run plans no '{rule}' job:\n{out[-3000:]}"


def _trial(work: Path, data: Path) -> None:
    cfg = {
        "id": TRIAL_ID,
        "title": "Tiny SLURM-test trial",
        "synthetic": True,
        "design": "stepped_wedge",
        "outcomes": {"y_bin": {"family": "bernoulli", "better": "lower"}},
        "alignment": {
            "source": "survey",
            "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
            "domains": {"safety": ["q1", "q2", "q3"], "flow": ["q4", "q5", "q6"]},
        },
        "models": [{"id": "hh"}],
        "data": {n: str(data / f"{n}.csv") for n in ("clusters", "patients", "cluster_periods", "survey")},
        "robustness": {"enabled": False},  # the battery has its own tests (test_robustness*.py)
        "seed": 11,
    }
    (work / "config" / "trials").mkdir(parents=True)
    (work / "config" / "trials" / f"{TRIAL_ID}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (work / "config" / "config.yaml").write_text(f"trials: [{TRIAL_ID}]\n")


def _job_blocks(log: str) -> dict[str, dict]:
    """Snakemake's own account of each job: {snakemake jobid: {rule, threads, resources}}."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        head = re.match(r"(?:local)?rule (\w+):", block)
        jobid = re.search(r"^\s+jobid: (\d+)", block, re.M)
        if not head or not jobid:
            continue
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)", block, re.M)
        resources = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        jobs[jobid.group(1)] = {
            "rule": head.group(1),
            "threads": int(threads.group(1)) if threads else 1,
            "resources": resources,
        }
    return jobs


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("slurm_project")
    data = tiny_project(work)
    _trial(work, data)

    env = dict(slurm_cluster.env)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # the jobs run `qialign ...` (sbatch --export=ALL)
    env.setdefault("QIALIGN_CACHE_DIR", str(ROOT / ".cache"))
    cmd = [
        str(SNAKEMAKE), "--workflow-profile", PROFILE, "--jobs", "2",
        # this test cluster keeps no accounting: job status from squeue (MinJobAge is 600 s)
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--set-threads", *(f"{r}={n}" for r, n in THREADS_OVERRIDE.items()),
        "--latency-wait", "10", *TARGETS,
    ]  # fmt: skip
    start = time.monotonic()
    try:
        run = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired as e:
        parts = (e.stdout, e.stderr)
        out = "".join(p.decode(errors="replace") if isinstance(p, bytes) else p or "" for p in parts)
        pytest.fail(f"snakemake on SLURM timed out\n{out[-4000:]}\n{slurm_cluster.logs()}")
    seconds = time.monotonic() - start
    log = run.stdout + run.stderr
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    # the scheduler's records, read now (they stay for MinJobAge after the jobs end)
    records = {sid: slurm_cluster.job(sid) for sid in submitted.values()}
    return {"work": work, "run": run, "log": log, "submitted": submitted, "records": records,
            "seconds": seconds, "cluster": slurm_cluster}  # fmt: skip


def _diagnostics(slurm_run) -> str:
    """The snakemake log's tail, the jobs' SLURM logs and the daemons' logs, for a failure message."""
    parts = [slurm_run["log"][-4000:]]
    for p in sorted((slurm_run["work"] / ".snakemake" / "slurm_logs").rglob("*.log")):
        parts.append(f"--- {p.relative_to(slurm_run['work'])}\n{p.read_text(errors='replace')[-3000:]}")
    parts.append(slurm_run["cluster"].logs(tail=2000))
    return "\n".join(parts)


@pytest.mark.slurm
def test_workflow_runs_through_slurm(slurm_run):
    run, log = slurm_run["run"], slurm_run["log"]
    assert run.returncode == 0, _diagnostics(slurm_run)
    for target in TARGETS:
        path = slurm_run["work"] / target
        assert path.is_file() and path.stat().st_size > 0, target
    jobs = _job_blocks(log)
    rules = {jobs[j]["rule"] for j in slurm_run["submitted"]}
    assert rules == {"validate", "alignment", "prepare"}, log[-3000:]
    # every job ran on the node and finished well, by SLURM's own account
    for sid, rec in slurm_run["records"].items():
        assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", (sid, rec)
        assert rec["NodeList"] == "qialign-node"
    # one sbatch submission per job, each with its own SLURM job id
    assert len(set(slurm_run["submitted"].values())) == len(slurm_run["submitted"]) == 3


@pytest.mark.slurm
def test_rule_resources_reach_the_scheduler(slurm_run):
    """threads -> CPUs/Task, mem_mb -> MinMemoryNode, runtime (min) -> TimeLimit, for every job."""
    assert slurm_run["run"].returncode == 0, _diagnostics(slurm_run)
    jobs = _job_blocks(slurm_run["log"])
    seen = {}
    for jobid, sid in slurm_run["submitted"].items():
        job, rec = jobs[jobid], slurm_run["records"][sid]
        mem_mb, runtime = int(job["resources"]["mem_mb"]), int(job["resources"]["runtime"])
        assert rec["Comment"].startswith(f"rule_{job['rule']}"), rec["Comment"]
        assert int(rec["CPUs/Task"]) == job["threads"], (job, rec)
        assert rec["MinMemoryNode"] == f"{mem_mb}M", (job, rec)
        h, m = divmod(runtime, 60)
        assert rec["TimeLimit"] == f"{h:02d}:{m:02d}:00", (job, rec)
        seen[job["rule"]] = (job["threads"], mem_mb, runtime)
    # and they are the rules' declared values (workflow/rules/*.smk), not the profile's defaults
    assert seen["validate"] == (THREADS_OVERRIDE["validate"], 2000, 10)
    assert seen["alignment"] == (2, 2000, 30)
    assert seen["prepare"] == (1, 4000, 10)
