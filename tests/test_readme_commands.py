"""Every ``onnxvis`` line of the README runs as written (issue 25, "done when").

The lines are read from the README's shell blocks (a ``\\`` continues a line; ``# ...`` is a comment; ``$ `` is a
prompt; ``VAR=value`` before the command is the environment). Each runs in a working folder of its own, where
the README's placeholder names are files that :data:`PLACEHOLDERS` says what they are: the shared assets, a
model exported by ``onnxvis export`` (once per session, in the full environment), or a small stand-in built
here. A line that cannot run here is in :data:`CANNOT_RUN`, with the reason; a new README line that is in
neither fails the test of the table, so the README and this test move together.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, asset, call_onnxvis

README = ROOT / "README.md"
SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"
CHELSEA = "images/skimage_chelsea.png"
COFFEE = "images/skimage_coffee.png"
PHOTOS = 3  # photos of the shared ImageNet sample in photos/: small inputs, the suite stays quick


@dataclass(frozen=True)
class Made:
    """What a placeholder is: ``kind`` asset (a file of ../shared/assets), photos (a folder of sample photos),
    export (``onnxvis export NAME --weights random``, once per session: needs torch), or stand-in (built by
    :data:`STAND_INS`); ``why`` says why it stands for the README's name."""

    kind: str
    what: str
    why: str


PLACEHOLDERS: dict[str, Made] = {
    "model.onnx": Made("asset", SQUEEZENET, "any .onnx a user has: the Caffe SqueezeNet"),
    "photo.jpg": Made("asset", CHELSEA, "a photo"),
    "cat.jpg": Made("asset", CHELSEA, "a cat"),
    "coffee.jpg": Made("asset", COFFEE, "a coffee"),
    "photos": Made("photos", "images/imagenet-sample", f"a folder of photos: {PHOTOS} of the ImageNet sample"),
    "models/alexnet.onnx": Made(
        "asset", SQUEEZENET, "an ImageNet CNN: AlexNet's export needs torch and its 233 MB checkpoint; the shared SqueezeNet "
        "is one the core environment has"),
    "squeezenet.onnx": Made("asset", SQUEEZENET, "the shared SqueezeNet"),
    "squeezenet_fp16.onnx": Made("asset", SQUEEZENET, "the shared SqueezeNet, float16"),
    "squeezenet_fp32.onnx": Made("stand-in", "fp32", "the shared SqueezeNet with every float16 made float32"),
    "base.onnx": Made("stand-in", "fp32", "a model before fine-tuning: SqueezeNet in float32"),
    "finetuned.onnx": Made("stand-in", "finetuned", "the same, its last three conv layers moved by 5%"),
    "resnet18.onnx": Made("asset", "models/mnist_cntk.onnx", "a float model whose int8 version the shared assets hold"),
    "resnet18_int8.onnx": Made("asset", "models/mnist_cntk_int8_qdq.onnx", "its QDQ int8 version"),
    "models/resnet18.onnx": Made("export", "resnet18", "the README's own export (relu_16 is its tensor name)"),
    "spectro.onnx": Made("stand-in", "spectro", "a spectrogram model: input_1 [1x1x76x32] -> conv -> 5 scores"),
    "spec.npy": Made("stand-in", "spec", "a 1x1x76x32 float32 spectrogram"),
    "specs": Made("stand-in", "specs", "a folder of two spectrograms"),
    "pets.onnx": Made("stand-in", "pets", "a 7-class classifier"),
    "pets.txt": Made("stand-in", "pets.txt", "its 7 class names"),
}

CANNOT_RUN: dict[str, str] = {
    "onnxvis export alexnet --weights alexnet-owt-7be5be79.pth":
        "needs torchvision's pretrained AlexNet checkpoint, a 233 MB download",
    "onnxvis export alexnet --weights cifar10_alexnet.pth":
        "needs the user's CIFAR-10 AlexNet checkpoint (a random one is 228 MB); tests/test_export_finetuned.py exports such a file",
    "onnxvis export resnet18 --weights checkpoint_epoch3.pth":
        "needs the user's fine-tuned checkpoint and pets.json; tests/test_export_finetuned.py exports such a file",
    "onnxvis info models/cifar10_alexnet.onnx": "reads what the CIFAR-10 export above writes, which cannot run here",
    "onnxvis serve models/alexnet.onnx":
        "a server that runs until it is stopped, on the fixed port 8000; tests/test_serve*.py run it with --port 0",
    "onnxvis features models/googlenet.onnx":
        "exports GoogLeNet first (a torch export the suite does not spend); benchmarks/features.py exports it and runs "
        "this command on inception4a (cat_2); tests/test_features.py runs features with --tensor",
    "onnxvis examples model.onnx /shared/images":
        "needs a Ray cluster (--ray-address auto) that holds /shared/images; tests/test_examples_ray.py runs the Ray engine",
}

# Lines over about ten seconds on the 2-core machine (the quick loop leaves them out with -m 'not slow').
SLOW = (
    "onnxvis cam models/resnet18.onnx cat.jpg --method score",
    "onnxvis saliency models/resnet18.onnx cat.jpg --method integrated-gradients",
    "onnxvis saliency squeezenet.onnx photos/ --preset caffe --method smoothgrad",
    "onnxvis cam squeezenet.onnx photos/ --preset caffe --method eigen",  # ROAD's imputations: 18 s a photo
)

# Lines that get fewer photos in photos/ than PHOTOS, to stay quick.
FEWER_PHOTOS = {"onnxvis cam squeezenet.onnx photos/ --preset caffe --method eigen": 1}

# Lines run with fewer optimisation steps than they say (a flag given twice: the last wins), to stay quick:
# 512 steps of SqueezeNet are minutes here; tests/test_features.py and benchmarks/ check what the steps give.
FEWER_STEPS = {"onnxvis features": 2}

# A line that reads what an earlier line wrote: that line runs first, in the same folder.
BEFORE = {
    "onnxvis examples squeezenet.onnx --redraw": "onnxvis examples squeezenet.onnx photos/ --layers 12,25",
}

# Commands whose stdout is the files they wrote, one per line.
WRITERS = {"kernels", "fmaps", "cam", "saliency", "report", "tutorial", "examples", "compare", "export", "features"}


# ----------------------------------------------------------------------------------- the README's lines


@dataclass(frozen=True)
class Line:
    """One ``onnxvis`` command of the README: its words, its README line number, the environment set before
    it, and the file its stdout is redirected to."""

    words: tuple[str, ...]
    number: int
    env: tuple[tuple[str, str], ...] = ()
    stdout: str | None = None

    @property
    def text(self) -> str:
        return shlex.join(self.words)

    def starts(self, prefix: str) -> bool:
        return self.text == prefix or self.text.startswith(prefix + " ")


_COMMAND = re.compile(r"^(?:\$ )?(?:[A-Z_]+=\S+ )*(?:python -m )?onnxvis\b")


def readme_lines(text: str) -> list[Line]:
    """The onnxvis commands of the README's shell blocks (```bash, ```sh or a bare ```), in order."""
    found = []
    for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if block.group(1) not in ("", "bash", "sh", "shell", "console"):
            continue
        first = text[: block.start(2)].count("\n") + 1
        rows = block.group(2).split("\n")
        i = 0
        while i < len(rows):
            number, line = first + i, rows[i]
            while line.endswith("\\") and i + 1 < len(rows):
                i += 1
                line = line[:-1] + " " + rows[i]
            i += 1
            stripped = line.strip()
            if not _COMMAND.match(stripped):
                continue  # a command's output, or another program
            found.extend(_commands(stripped.removeprefix("$ "), number))
    return found


def _commands(line: str, number: int) -> list[Line]:
    words = shlex.split(line, comments=True)
    commands, segment = [], []
    for word in [*words, "&&"]:
        if word not in ("&&", ";", "|"):
            segment.append(word)
            continue
        env = []
        while segment and re.match(r"^[A-Z_]+=", segment[0]):
            name, _, value = segment.pop(0).partition("=")
            env.append((name, value))
        if segment[:3] == ["python", "-m", "onnxvis"]:
            segment = segment[2:]
        stdout = None
        if ">" in segment:
            at = segment.index(">")
            stdout, segment = segment[at + 1], segment[:at]
        if segment and segment[0] == "onnxvis":
            commands.append(Line(tuple(segment), number, tuple(env), stdout))
        segment = []
    return commands


LINES = readme_lines(README.read_text(encoding="utf-8"))


def cannot_run(line: Line) -> str | None:
    return next((why for prefix, why in CANNOT_RUN.items() if line.starts(prefix)), None)


def needs_export(line: Line) -> bool:
    return any(PLACEHOLDERS[w].kind == "export" for w in _placeholders(line)) or line.words[1] == "export"


def _placeholders(line: Line) -> list[str]:
    return [name for word in line.words[1:] for name in [word.rpartition("=")[2].rstrip("/")] if name in PLACEHOLDERS]


def _param(line: Line):
    marks = []
    if needs_export(line):
        marks.append(pytest.mark.full)
    if any(line.starts(prefix) for prefix in SLOW):
        marks.append(pytest.mark.slow)
    return pytest.param(line, id=f"L{line.number}:{' '.join(line.words[1:4])}", marks=marks)


# ------------------------------------------------------------------------------- the placeholder files


def _fp32(path: Path) -> Path:
    """The shared SqueezeNet with every float16 (initializers, inputs, outputs, value infos) made float32."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(asset(SQUEEZENET)))
    graph = model.graph
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.save(model, str(path))
    return path


def _finetuned(path: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    _fp32(path)
    model = onnx.load(str(path))
    convs = [n for n in model.graph.node if n.op_type == "Conv"][-3:]
    moved = {n.input[1] for n in convs}
    rng = np.random.default_rng(0)
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name in moved:
            w = numpy_helper.to_array(tensor)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(
                (w + 0.05 * np.abs(w).mean() * rng.standard_normal(w.shape)).astype(np.float32), tensor.name))
    onnx.save(model, str(path))
    return path


def _spectro(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["input_1", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["scores"])]
    graph = helper.make_graph(nodes, "spectro", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [1, 1, 76, 32])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _spec(path: Path, seed: int = 0) -> Path:
    path = path if path.suffix == ".npy" else path.with_name(path.name + ".npy")
    np.save(path, np.random.default_rng(seed).standard_normal((1, 1, 76, 32)).astype(np.float32))
    return path


def _specs(path: Path) -> Path:
    path.mkdir()
    for i in range(2):
        _spec(path / f"spec_{i}.npy", seed=i + 1)
    return path


def _pets(path: Path) -> Path:
    from conftest import classifier

    return classifier(path)


def _pets_txt(path: Path) -> Path:
    from conftest import LABELS

    path.write_text("\n".join(f"pet {name}" for name in LABELS) + "\n", encoding="utf-8")
    return path


STAND_INS: dict[str, Callable[[Path], Path]] = {
    "fp32": _fp32, "finetuned": _finetuned, "spectro": _spectro, "spec": _spec, "specs": _specs, "pets": _pets,
    "pets.txt": _pets_txt,
}


EXPORT_LINE = "onnxvis export {} --weights random"
"""The README's export line: the session's export runs it as written, and its own test reads that run."""


@pytest.fixture(scope="session")
def made(tmp_path_factory):
    """Stand-ins and exports, built once per session on first use: what -> path. An export is the README's
    line ``onnxvis export NAME --weights random``, run as written in a folder of its own (it writes
    models/NAME.onnx); ``made.runs`` keeps its result for the test of that line."""
    folder = tmp_path_factory.mktemp("readme-made")
    built: dict[str, Path] = {}

    def get(item: Made) -> Path:
        if item.what not in built:
            if item.kind == "export":
                words = EXPORT_LINE.format(item.what).split()[1:]
                get.runs[item.what] = done = call_onnxvis(*words, cwd=folder)  # type: ignore[attr-defined]
                assert done.returncode == 0, done.stderr
                built[item.what] = folder / "models" / f"{item.what}.onnx"
            else:
                built[item.what] = STAND_INS[item.what](folder / item.what)
        return built[item.what]

    get.runs = {}  # type: ignore[attr-defined]
    return get


@dataclass(frozen=True)
class Workdir:
    path: Path
    place: Callable[[str], None]  # makes the placeholder of that name in the folder


@pytest.fixture
def workdir(tmp_path, made, request):
    """A working folder where the README's names are: ../shared is the shared folder, each placeholder a link."""
    work = tmp_path / "project"
    work.mkdir()
    (tmp_path / "shared").symlink_to(asset("").parent)  # ../shared/assets/... as the README writes it
    line = request.node.callspec.params.get("line") if hasattr(request.node, "callspec") else None
    photos = next((n for prefix, n in FEWER_PHOTOS.items() if line is not None and line.starts(prefix)), PHOTOS)

    def place(name: str) -> None:
        item = PLACEHOLDERS[name]
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            return
        if item.kind == "asset":
            target.symlink_to(asset(item.what))
        elif item.kind == "photos":
            target.mkdir()
            for photo in sorted(asset(item.what).glob("*.JPEG"))[:photos]:
                (target / photo.name).symlink_to(photo)
        else:
            target.symlink_to(made(item))

    return Workdir(work, place)


# --------------------------------------------------------------------------------------------- the tests


def test_every_readme_line_is_run_or_listed_with_a_reason():
    texts = [line.text for line in LINES]
    assert len(texts) > 30 and "onnxvis fmaps model.onnx photo.jpg" in texts  # the parser finds the README's lines
    for prefix in CANNOT_RUN:
        assert any(line.starts(prefix) for line in LINES), f"CANNOT_RUN lists a line the README no longer has: {prefix}"
    for prefix in [*SLOW, *BEFORE, *BEFORE.values(), *FEWER_PHOTOS, *FEWER_STEPS]:
        assert any(line.starts(prefix) for line in LINES), f"a table lists a line the README no longer has: {prefix}"
    for line in LINES:
        if cannot_run(line):
            continue
        for word in (w.rpartition("=")[2] for w in line.words[1:]):
            if re.search(r"\.(onnx|jpg|jpeg|png|npy|txt|json)$", word) and not word.startswith(("../shared/", "-")):
                if line.words[1] == "export" and word.startswith("models/"):
                    continue  # what the export writes
                assert word in PLACEHOLDERS, f"README line {line.number} names {word!r}: add it to PLACEHOLDERS"


def test_the_parser_reads_continuations_prompts_environments_and_redirects():
    text = ("```bash\nonnxvis a x.onnx \\\n  --b 1   # note\nRAY_X=1 onnxvis c && tensorboard --logdir d\n"
            "onnxvis e > f.jsonl\n```\n```\n$ onnxvis g\noutput: it's text\n```\n```python\nonnxvis.h()\n```\n")
    lines = readme_lines(text)
    assert [(line.words, line.number) for line in lines] == [
        (("onnxvis", "a", "x.onnx", "--b", "1"), 2), (("onnxvis", "c"), 4), (("onnxvis", "e"), 5), (("onnxvis", "g"), 8)]
    assert lines[1].env == (("RAY_X", "1"),) and lines[2].stdout == "f.jsonl"


@pytest.mark.parametrize("line", [_param(line) for line in LINES if not cannot_run(line)])
def test_readme_line_runs_as_written(line: Line, workdir: Workdir, made):
    before = next((b for prefix, b in BEFORE.items() if line.starts(prefix)), None)
    chain = [*([next(x for x in LINES if x.starts(before))] if before else []), line]
    for step in chain:
        for name in _placeholders(step):
            workdir.place(name)
        if step.words[1] == "export" and step.text == EXPORT_LINE.format(step.words[2]):
            made(PLACEHOLDERS[f"models/{step.words[2]}.onnx"])  # the session's export is this line, run once
            done = made.runs[step.words[2]]
            workdir = Workdir(made(PLACEHOLDERS[f"models/{step.words[2]}.onnx"]).parents[1], workdir.place)
        else:
            steps = next((n for prefix, n in FEWER_STEPS.items() if step.starts(prefix)), None)
            extra = ("--steps", str(steps)) if steps is not None else ()
            done = call_onnxvis(*step.words[1:], *extra, cwd=workdir.path, env=dict(step.env) or None)
        assert done.returncode == 0, f"README line {step.number}: {step.text}\n{done.stderr}"
        assert "onnxvis: error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    if line.stdout is not None:
        (workdir.path / line.stdout).write_text(done.stdout, encoding="utf-8")
        rows = [json.loads(row) for row in done.stdout.splitlines()]
        assert len(rows) == PHOTOS and all("top" in row or "classes" in row or row for row in rows)
    if line.words[1] in WRITERS:
        paths = done.stdout.split("\n")
        written = [Path(p) if Path(p).is_absolute() else workdir.path / p for p in paths if p]
        assert written and all(p.exists() for p in written), done.stdout
        if "-o" not in line.words and line.words[1] != "export":
            assert all((workdir.path / "onnxvis-out") in p.parents for p in written)  # the default folder, under the project
