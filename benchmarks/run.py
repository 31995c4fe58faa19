"""Benchmark onnxvis against the PyTorch tutorial's scripts, each as a whole process.

    python benchmarks/run.py                      # 7 rounds, alexnet, vgg16 and resnet18
    python benchmarks/run.py --runs 3 --models alexnet

What it does:

1. Setup, once (kept in ``--workdir``, default ``benchmarks/results/``, which git ignores): for each
   model, random weights from torchvision with ``torch.manual_seed(0)`` saved as a state dict
   ``weights/<model>.pth``, and that same state dict exported with ``onnxvis export <model>
   --weights weights/<model>.pth -o models/`` (a single ``.onnx`` file, as export writes it).
2. Pairs of commands, a reference and onnxvis, on the same weights and the same photo:

   ============  =========================================  ==============================================
   task          reference (torch venv)                     onnxvis (core venv, no torch)
   ============  =========================================  ==============================================
   kernels       tutorial_kernels.py (first two convs)      ``kernels M --layers 0,1 --split``
   fmaps conv1   tutorial_fmaps.py                          ``fmaps M IMAGE --resize 224,224 --mean --std``
   tutorial run  tutorial_run.py (AlexNet only)             ``tutorial M IMAGE``
   fmaps all     vgg16_hooks.py (forward hooks)             ``fmaps M IMAGE --layers all``
   ============  =========================================  ==============================================

   plus onnxvis alone: ``kernels M --layers 0`` (cost must not grow with the model's size),
   ``onnxvis --help``, and the floor ``python -c "import numpy, onnxruntime"``.
3. Rounds: one warm-up round (page cache, bytecode), not counted, then ``--runs`` rounds. In every
   round each task runs once, the reference and onnxvis back to back, their order alternating from
   round to round, so that both sides see the same load on a shared machine.
4. Each run is one child process, measured exactly: wall time with ``perf_counter`` around
   spawn and ``os.wait4``; CPU time = user + system from the child's ``rusage``; peak memory =
   its ``ru_maxrss`` (peak RSS). Each run writes to a fresh output folder.
5. Prints a table of medians and ratios, and writes it with the machine's description to
   ``latest.md`` and every raw run to ``latest.json`` in ``--workdir``.

The children get the driver's environment, the same for both sides, except that
``PYTHONDONTWRITEBYTECODE`` is removed (as after ``pip install``, modules run from compiled
bytecode; ``--keep-env`` keeps it) and ``PYTHONPATH`` points at this checkout. Variables such as
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are passed through untouched and reported.

This is not a test: nothing here fails on a slow machine. It exits non-zero only when a command fails.
The driver imports nothing heavy, so that its own memory stays below any child's (on Linux a
spawned child's ``ru_maxrss`` starts from its parent's peak).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_IMAGE = ROOT.parent / "shared" / "assets" / "images" / "skimage_chelsea.png"
TUTORIAL_MEAN = "0.49139968,0.48215827,0.44653124"
TUTORIAL_STD = "0.24703233,0.24348505,0.26158768"
ENV_REPORTED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONDONTWRITEBYTECODE")


def _default_python(venv: str, fallback: str) -> str:
    path = Path(venv) / "bin" / "python"
    return str(path) if path.exists() else fallback


# ----------------------------------------------------------------------------------- measuring


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # seconds, user + system
    peak: int  # bytes, peak resident set size


def measure(argv: list[str], env: dict[str, str], log: Path) -> Run:
    """Run ``argv`` as one child process; stdout and stderr go to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
            (os.POSIX_SPAWN_CLOSE, fd),
        ]
        started = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
    finally:
        os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"benchmark command failed with exit code {code}:\n  {' '.join(argv)}\n{tail}")
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Run(wall, usage.ru_utime + usage.ru_stime, peak)


@dataclass
class Command:
    label: str
    argv: list[str]
    outdir: Path | None = None  # emptied before each run; "{out}" in argv is replaced by a fresh folder
    runs: list[Run] = field(default_factory=list)

    def run(self, env: dict[str, str], workdir: Path, round_no: int, keep: bool) -> Run:
        out = workdir / "runs" / self.label.replace(" ", "_").replace("/", "_") / f"r{round_no}"
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [a.replace("{out}", str(out)) for a in self.argv]
        result = measure(argv, env, out.parent / f"r{round_no}.log")
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
        return result

    def median(self, what: str) -> float:
        return statistics.median(getattr(r, what) for r in self.runs)


@dataclass
class Task:
    model: str
    name: str
    reference: Command | None
    onnxvis: Command
    target: str = ""


# ------------------------------------------------------------------------------------- set-up


def prepare_models(models: list[str], workdir: Path, torch_python: str, env: dict[str, str]) -> dict[str, tuple[Path, Path]]:
    """Random weights saved once as a state dict, and that state dict exported to one .onnx file."""
    weights_dir, models_dir = workdir / "weights", workdir / "models"
    weights_dir.mkdir(parents=True, exist_ok=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in models:
        pth, onnx_file = weights_dir / f"{name}.pth", models_dir / f"{name}.onnx"
        if not pth.exists():
            print(f"setup: random {name} weights -> {pth}", file=sys.stderr, flush=True)
            code = (
                "import sys, torch, torchvision\n"
                "torch.manual_seed(0)\n"
                "model = torchvision.models.get_model(sys.argv[1], weights=None)\n"
                "torch.save(model.state_dict(), sys.argv[2] + '.tmp')\n"
            )
            subprocess.run([torch_python, "-c", code, name, str(pth)], env=env, check=True)
            os.replace(str(pth) + ".tmp", pth)
        if not onnx_file.exists() or onnx_file.stat().st_mtime < pth.stat().st_mtime:
            print(f"setup: onnxvis export {name} --weights {pth} -o {models_dir}", file=sys.stderr, flush=True)
            subprocess.run(
                [torch_python, "-m", "onnxvis", "export", name, "--weights", str(pth), "-o", str(models_dir)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        paths[name] = (pth, onnx_file)
    return paths


def build_tasks(args: argparse.Namespace, paths: dict[str, tuple[Path, Path]]) -> list[Task]:
    tp, cp, image = args.torch_python, args.onnxvis_python, str(args.image)
    onnxvis = [cp, "-m", "onnxvis"]
    tasks: list[Task] = []
    for name, (pth, model) in paths.items():
        m = str(model)
        tasks.append(
            Task(
                name,
                "kernels (2 layers, split)",
                Command(f"{name} tutorial kernels", [tp, str(HERE / "tutorial_kernels.py"),
                    "--model", name, "--weights", str(pth), "--logdir", "{out}"]),
                Command(f"{name} onnxvis kernels", [*onnxvis, "kernels", m, "--layers", "0,1", "--split", "-o", "{out}"]),
                "alexnet: >= 18x faster, <= 5% memory, <= 1.6x the floor" if name == "alexnet" else "",
            )
        )
        tasks.append(
            Task(
                name,
                "fmaps conv1",
                Command(f"{name} tutorial fmaps", [tp, str(HERE / "tutorial_fmaps.py"),
                    "--model", name, "--weights", str(pth), "--image", image, "--logdir", "{out}"]),
                Command(
                    f"{name} onnxvis fmaps",
                    [*onnxvis, "fmaps", m, image, "--resize", "224,224", "--mean", TUTORIAL_MEAN, "--std", TUTORIAL_STD, "-o", "{out}"],
                ),
                "alexnet: >= 15x faster, <= 5% memory, <= 2.0x the floor" if name == "alexnet" else "",
            )
        )
        if name == "alexnet":  # the tutorial's own code builds AlexNet
            tasks.append(
                Task(
                    name,
                    "tutorial run (TensorBoard)",
                    Command(
                        f"{name} tutorial run",
                        [tp, str(HERE / "tutorial_run.py"), "--weights", str(pth), "--image", image, "--logdir", "{out}"],
                    ),
                    Command(f"{name} onnxvis tutorial", [*onnxvis, "tutorial", m, image, "-o", "{out}"]),
                )
            )
        tasks.append(
            Task(
                name,
                "fmaps every conv",
                Command(f"{name} torch hooks", [tp, str(HERE / "vgg16_hooks.py"),
                    "--model", name, "--weights", str(pth), "--image", image, "--logdir", "{out}"]),
                Command(f"{name} onnxvis fmaps all", [*onnxvis, "fmaps", m, image, "--layers", "all", "-o", "{out}"]),
                "vgg16: faster, less memory" if name == "vgg16" else "",
            )
        )
    for name, (_pth, model) in paths.items():
        tasks.append(
            Task(
                name,
                "layers",
                None,
                Command(f"{name} onnxvis layers", [*onnxvis, "layers", str(model)]),
                "<= 1.6x the floor" if name == "alexnet" else "",
            )
        )
        tasks.append(
            Task(
                name,
                "kernels conv1 only",
                None,
                Command(f"{name} onnxvis kernels conv1", [*onnxvis, "kernels", str(model), "--layers", "0", "-o", "{out}"]),
                "vgg16 about as fast as alexnet" if name == "vgg16" else "",
            )
        )
    tasks.append(Task("-", "onnxvis --help", None, Command("onnxvis --help", [*onnxvis, "--help"]), "<= 0.2 s"))
    tasks.append(
        Task("-", "floor: import numpy, onnxruntime", None, Command("floor", [cp, "-c", "import numpy, onnxruntime"]))
    )
    if args.only:
        tasks = [t for t in tasks if any(s in f"{t.model} {t.name}" for s in args.only)]
    return tasks


# ------------------------------------------------------------------------------------ reporting


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def _s(x: float) -> str:
    return f"{x:.2f} s" if x >= 0.995 else f"{x * 1000:.0f} ms"


def machine() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
        info["cpu"] = f"{names[0] if names else platform.processor()} x {os.cpu_count()} logical CPUs"
        mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        info["memory"] = f"{int(mem.split()[1]) / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        info["cpu"] = f"{platform.processor()} x {os.cpu_count()}"
    info["os"] = f"{platform.system()} {platform.release()} ({platform.machine()})"
    return info


def versions(python: str, modules: list[str]) -> str:
    code = (
        "import importlib, platform, sys\n"
        "out = ['Python ' + platform.python_version()]\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        out.append(m + ' ' + importlib.import_module(m).__version__)\n"
        "    except Exception:\n"
        "        pass\n"
        "print(', '.join(out))\n"
    )
    done = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()[-200:]


def _floor_ratio(task: Task, tasks: list[Task]) -> float | None:
    """The task's wall time over the import floor's (``python -c "import numpy, onnxruntime"``)."""
    floor = next((t for t in tasks if t.name.startswith("floor")), None)
    return None if floor is None else task.onnxvis.median("wall") / floor.onnxvis.median("wall")


def verdict(task: Task, tasks: list[Task]) -> str:
    ov = task.onnxvis
    wanted_floor = next((float(part.split("x the floor")[0].split("<=")[-1]) for part in task.target.split(", ")
                         if "x the floor" in part), None)
    if wanted_floor is not None:
        ratio = _floor_ratio(task, tasks)
        floor_part = "" if ratio is None else f"{ratio:.2f}x the floor: " + ("met" if ratio <= wanted_floor else "NOT met")
        if task.reference is None:
            return floor_part
        speed = task.reference.median("wall") / ov.median("wall")
        memory = ov.median("peak") / task.reference.median("peak")
        wanted_speed = float(task.target.split(">=")[1].split("x")[0])
        faster = f"{speed:.1f}x faster: " + ("met" if speed >= wanted_speed and memory <= 0.05 else "NOT met")
        return ", ".join(filter(None, [faster, floor_part]))
    if task.name == "onnxvis --help":
        return "met" if ov.median("wall") <= 0.2 else "NOT met"
    if task.name == "kernels conv1 only" and task.model == "vgg16":
        alex = next((t for t in tasks if t.model == "alexnet" and t.name == task.name), None)
        if alex is None:
            return ""
        ratio = ov.median("wall") / alex.onnxvis.median("wall")
        return f"{ratio:.2f}x alexnet's: " + ("met" if ratio <= 1.25 else "NOT met")
    if task.reference is None or not task.target:
        return ""
    speed = task.reference.median("wall") / ov.median("wall")
    memory = ov.median("peak") / task.reference.median("peak")
    if "10x" in task.target:
        return "met" if speed >= 10 and memory <= 0.10 else "NOT met"
    return "met" if speed > 1 and memory < 1 else "NOT met"


def table(tasks: list[Task]) -> str:
    head = (
        "| model | task | reference: wall / CPU / peak | onnxvis: wall / CPU / peak | faster (wall) | "
        "faster (CPU) | memory | target |\n|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for t in tasks:
        ov = t.onnxvis
        mine = f"{_s(ov.median('wall'))} / {_s(ov.median('cpu'))} / {_mib(ov.median('peak'))}"
        if t.reference is not None:
            ref = t.reference
            theirs = f"{_s(ref.median('wall'))} / {_s(ref.median('cpu'))} / {_mib(ref.median('peak'))}"
            speed = f"{ref.median('wall') / ov.median('wall'):.1f}x"
            cpu = f"{ref.median('cpu') / ov.median('cpu'):.1f}x"
            memory = f"{100 * ov.median('peak') / ref.median('peak'):.1f}%"
        else:
            theirs = speed = cpu = memory = "-"
        target = t.target
        judged = verdict(t, tasks)
        if judged:
            target = f"{target}: **{judged}**" if target else judged
        rows.append(f"| {t.model} | {t.name} | {theirs} | {mine} | {speed} | {cpu} | {memory} | {target} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark onnxvis against the PyTorch tutorial scripts (whole processes).")
    parser.add_argument("--runs", type=int, default=7, help="measured rounds after one warm-up round (default 7)")
    parser.add_argument("--models", default="alexnet,vgg16,resnet18", help="comma list of torchvision models")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help=f"the photo (default {DEFAULT_IMAGE})")
    parser.add_argument("--workdir", type=Path, default=HERE / "results", help="weights, models, outputs, results")
    parser.add_argument("--torch-python", default=_default_python(str(ROOT / ".venv"), sys.executable),
        help="python with torch, torchvision, tensorboard (default: .venv, made by scripts/test.sh)")
    parser.add_argument("--onnxvis-python", default=_default_python(str(ROOT / ".venv-core"), sys.executable),
        help="python that runs onnxvis (default: .venv-core, without torch, made by scripts/test.sh)")
    parser.add_argument("--only", action="append", help="run only tasks whose 'model task' contains this text (repeatable)")
    parser.add_argument("--keep-env", action="store_true", help="pass PYTHONDONTWRITEBYTECODE through to the children")
    parser.add_argument("--keep-outputs", action="store_true", help="keep every run's output folder")
    args = parser.parse_args()
    if not args.image.is_file():
        parser.error(f"no photo at {args.image}; give one with --image")
    args.workdir = args.workdir.resolve()
    args.image = args.image.resolve()

    env = dict(os.environ)
    if not args.keep_env:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")

    paths = prepare_models([m.strip() for m in args.models.split(",") if m.strip()], args.workdir, args.torch_python, env)
    tasks = build_tasks(args, paths)
    commands = [c for t in tasks for c in (t.reference, t.onnxvis) if c is not None]
    load_before = os.getloadavg()
    started = time.time()
    for round_no in range(args.runs + 1):
        for t in tasks:
            pair = [c for c in (t.reference, t.onnxvis) if c is not None]
            if round_no % 2:
                pair.reverse()
            for command in pair:
                result = command.run(env, args.workdir, round_no, args.keep_outputs)
                if round_no > 0:  # round 0 warms the page cache and writes bytecode
                    command.runs.append(result)
        print(f"round {round_no}/{args.runs} done ({'warm-up' if round_no == 0 else 'measured'})", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    info = machine()
    env_seen = {k: os.environ[k] for k in ENV_REPORTED if k in os.environ}
    children_env = {k: env[k] for k in ENV_REPORTED if k in env}
    lines = [
        f"Machine: {info.get('cpu')}, {info.get('memory', '?')} RAM, {info.get('os')}.",
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{args.runs} measured rounds after one warm-up; medians; {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}.",
        f"Reference: `{args.torch_python}` ({versions(args.torch_python, ['torch', 'torchvision', 'tensorboard', 'PIL'])}).",
        f"onnxvis: `{args.onnxvis_python}` ({versions(args.onnxvis_python, ['numpy', 'onnx', 'onnxruntime', 'PIL'])}; "
        f"torch {'absent' if 'torch' not in versions(args.onnxvis_python, ['torch']) else 'present'}).",
        f"Environment of the driver: {env_seen or 'none of ' + ', '.join(ENV_REPORTED)}; "
        f"children (both sides): {children_env or 'none of them'}.",
        "",
        table(tasks),
        "",
        "faster = reference / onnxvis (median wall or CPU time); memory = onnxvis peak RSS / reference peak RSS.",
    ]
    report = "\n".join(lines)
    print(report)
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "latest.md").write_text(report + "\n")
    raw = {
        "machine": info,
        "load": [load_before, load_after],
        "env": children_env,
        "commands": {c.label: {"argv": c.argv, "runs": [vars(r) for r in c.runs]} for c in commands},
    }
    (args.workdir / "latest.json").write_text(json.dumps(raw, indent=1) + "\n")
    print(f"\nwritten: {args.workdir / 'latest.md'}, {args.workdir / 'latest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
