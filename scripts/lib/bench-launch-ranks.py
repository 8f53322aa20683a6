#!/usr/bin/env python3
"""scripts/bench-launch, parts 3 and 4: what one rank of `hybrun run` costs before
the runtime starts, and 256 ranks started at once on one node.

    bench-launch-ranks.py HYBRUN SITE IMAGE WORK RANKS ROUNDS

3. System calls of one rank's `hybrun exec` before it execs ch-run (strace, one
   process, no -f), in hybrid and bind mode, as `hybrun run` starts it:
   - handed: the wrapper `hybrun run` composes (`--from-run`), with the plan it
     hands over in HYBRUN_RANK_PLAN (what every rank does now);
   - self-planning: the same wrapper arguments without `--from-run` (what every
     rank did before: site file, image, gate cache, bind-mode closure), warm cache.
   Counted: every strace line before the first execve of ch-run (hybrun's own
   execve and the dynamic loader included), and among them (after hybrun's own
   execve, whose arguments name them) the lines naming the image, hybrun's
   cache, the site file, or an MPI library (libmpi*).
   Targets (issue 13): at most 60, none naming the image or a library.
4. RANKS processes started at once on this node, with srun's variables of one
   job step (each rank the only one of its node: ch-run's join needs its peers
   alive until all have joined, which ranks running /bin/true are not), each
   running its rank's command to the end: ch-run IMAGE -- /bin/true, started
   - directly (the exact command the rank execs, from its --dry-run),
   - through `hybrun exec --from-run` (handed plan),
   - through `hybrun exec` planning itself (before), with hybrun's cache emptied
     before each round (cold: every rank resolves and races to write it).
   Wall time from the first spawn until the last rank has exited, ROUNDS rounds,
   the variants' order rotated each round; ratios to direct within each round.
   The page cache is not dropped (a shared machine): cold means hybrun's cache.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

hybrun, site, image, work, ranks, rounds = sys.argv[1:7]
ranks, rounds = int(ranks), int(rounds)
home = os.environ["HOME"]
cache = os.path.join(home, ".hybrun", "cache")
MODES = ["hybrid", "bind"]


def fail(msg):
    sys.exit(f"bench-launch: {msg}")


def run_plan(mode):
    """The wrapper argv and the launcher environment `hybrun run` composes."""
    out = subprocess.run(
        [hybrun, "run", "--json", "--site", site, "--launcher", "mpiexec-hydra", "-n", "2",
         "--runtime", "charliecloud", "--mpi-profile", "mpich", "--mode", mode, image,
         "--", "/bin/true"],
        capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"hybrun run --json ({mode}) failed: {out.stderr.strip()}")
    doc = json.loads(out.stdout)
    per_rank = doc["plan"]["per_rank"]
    if per_rank.get("kind") != "wrapper" or "--from-run" not in per_rank["args"]:
        fail(f"{mode}: hybrun run hands no plan to a wrapper: {per_rank}")
    env = dict(doc["command"]["env_set"])
    return [per_rank["program"]] + per_rank["args"], env


def rank_env(base, plan_env, step, rank, count):
    """srun's variables for `rank` of `count`, each the only rank of its node:
    ch-run's join needs its peers alive until all have joined, which ranks
    running /bin/true are not (the first one's namespaces are gone before the
    last one joins)."""
    env = dict(base)
    env.update(plan_env)
    env.update({
        "SLURM_JOB_ID": step, "SLURM_STEP_ID": "0", "SLURMD_NODENAME": f"bench{rank}",
        "SLURM_STEP_TASKS_PER_NODE": f"1(x{count})", "SLURM_NODEID": str(rank),
        "SLURM_LOCALID": "0", "SLURM_PROCID": str(rank), "PMI_RANK": str(rank),
        "PMI_SIZE": str(count),
    })
    return env


def without_from_run(argv):
    return [a for a in argv if a != "--from-run"]


def syscalls(argv, plan_env, label):
    trace = os.path.join(work, f"strace-{label}.txt")
    env = rank_env(os.environ, plan_env, f"s{os.getpid()}{label}", 0, 2)
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)  # warm-up
    subprocess.run(["strace", "-qq", "-o", trace, "--"] + argv, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    lines = open(trace, errors="replace").read().splitlines()
    end = next((i for i, l in enumerate(lines) if re.match(r'execve\("[^"]*ch-run"', l)), None)
    if end is None:
        fail(f"{label}: no execve of ch-run in {trace}")
    # Not hybrun's own execve: its arguments name the site file and the image.
    before = lines[1:end]
    named = lambda s: sum(1 for l in before if s in l)
    return {
        "calls": end,
        "image": named(image),
        "cache": named(cache),
        "site": named(site),
        "libmpi": sum(1 for l in before if re.search(r"libmpi", l)),
    }


def part3():
    print("## One rank's hybrun exec before ch-run starts (strace)")
    print("| mode | rank | system calls | naming the image | hybrun's cache | the site file | libmpi* | target |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        argv, plan_env = run_plan(mode)
        for label, args in [("self-planning (before)", without_from_run(argv)),
                            ("handed (--from-run)", argv)]:
            c = syscalls(args, plan_env, f"{mode}-{label.split()[0]}")
            ok = ""
            if "handed" in label:
                good = c["calls"] <= 60 and c["image"] == 0 and c["libmpi"] == 0 \
                    and c["cache"] == 0 and c["site"] == 0
                ok = "<= 60, none of the image/libraries: " + ("PASS" if good else "FAIL")
            print(f"| {mode} | {label} | {c['calls']} | {c['image']} | {c['cache']} | "
                  f"{c['site']} | {c['libmpi']} | {ok} |")
    print()


def direct_command(argv, env):
    """The exact command a rank execs (its --dry-run as JSON)."""
    out = subprocess.run(argv[:2] + ["--json"] + argv[2:], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        fail(f"hybrun exec --json failed: {out.stderr.strip()}")
    cmd = json.loads(out.stdout)["command"]
    return cmd["argv"], dict(cmd["env_set"]), cmd["env_unset"]


def start_all(variant, argv, plan_env, step, mode):
    envs = [rank_env(os.environ, plan_env, step, i, ranks) for i in range(ranks)]
    cmds = [argv] * ranks
    if variant == "direct":
        cmds, envs2 = [], []
        for env in envs:
            a, s, u = direct_command(argv, env)
            e = {k: v for k, v in env.items() if k not in u}
            e.update(s)
            cmds.append(a)
            envs2.append(e)
        envs = envs2
    elif variant == "self":
        cmds = [without_from_run(argv)] * ranks
        shutil.rmtree(cache, ignore_errors=True)
    # handed: the ranks read no cache; bind mode's bundle is the job's, made
    # before the ranks start (kept).
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c, e in zip(cmds, envs)]
    errors = [(p.wait(), p.stderr.read()) for p in procs]
    elapsed = time.perf_counter() - t0
    bad = [(rc, err) for rc, err in errors if rc != 0]
    if bad:
        fail(f"{mode} {variant}: {len(bad)} of {ranks} ranks failed, e.g. "
             f"rc {bad[0][0]}: {bad[0][1].decode(errors='replace').strip()[:400]}")
    return elapsed


def part4():
    variants = ["direct", "handed", "self"]
    names = {"direct": "ch-run directly", "handed": "hybrun exec --from-run (handed plan)",
             "self": "hybrun exec planning itself (before), cold cache"}
    print(f"## {ranks} ranks started at once on one node, until the last has run "
          "ch-run IMAGE -- /bin/true")
    print("| mode | started by | median s | min s | max s | median ratio to direct (per round) |")
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        argv, plan_env = run_plan(mode)
        # What a real `hybrun run` does before it starts the ranks (its --json
        # launches nothing): bind mode's bundle made in hybrun's cache. A
        # self-planning rank makes it too; each cold round removes it first.
        subprocess.run(without_from_run(argv), env=rank_env(os.environ, plan_env, "prep", 0, 1),
                       check=True, stdout=subprocess.DEVNULL)
        times = {v: [] for v in variants}
        for r in range(rounds):
            order = variants[r % 3:] + variants[:r % 3]
            for v in order:
                times[v].append(start_all(v, argv, plan_env, f"b{os.getpid()}r{r}{v}", mode))
        for v in variants:
            t = times[v]
            ratios = [x / d for x, d in zip(t, times["direct"])]
            print(f"| {mode} | {names[v]} | {statistics.median(t):.3f} | {min(t):.3f} | "
                  f"{max(t):.3f} | {statistics.median(ratios):.3f} "
                  f"({', '.join(f'{x:.2f}' for x in ratios)}) |")
    print()


part3()
part4()
