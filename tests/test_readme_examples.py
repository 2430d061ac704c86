"""Every ```python block of README.md runs, so that an example that drifts from the API fails here.

Each block is one test case, named by the README line of its opening fence (``README.md:35``).  A block
with no comment before it is a complete program: it runs alone, in a fresh namespace.  A block that is
deliberately not one says so in an HTML comment on the line right before its opening fence:

* ``<!-- readme-test: continues -->``: the block goes on from the previous ```python block; the test runs
  that block first (and whatever that one continues), all in one namespace.
* ``<!-- readme-test: given NAME -->``: the block uses names that its prose describes but does not define
  (a trained network ``net``, a replay batch ``obs``, ``actions``...) or a place (a module inside the
  package); the set-up ``GIVEN[NAME]`` below provides them first, with the real API, so the block itself
  still runs as written.
* ``<!-- readme-test: skip (REASON) -->``: the block cannot run in a test (it needs a GPU, a cluster, MPI,
  a download or a long training); it is still compiled, and the test is reported as skipped with
  REASON, which must be given.

Nothing is skipped silently: a block with no comment that does not run fails, as does an unknown or
misplaced ``readme-test`` comment, a ``given`` naming no set-up, or a set-up that no block uses.  Blocks
run in a temporary directory (every file they write lands there), must not open network connections and
must stay quick (small data, a few seconds at most).

The ```bash blocks are not run; the test checks that the ``examples/`` and ``benchmarks/`` scripts they
name exist.
"""

from __future__ import annotations

import re
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bpcore.backends.ops import registry

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_FENCE = re.compile(r"```(\w*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
_SKIP = re.compile(r"skip \((.+)\)")
_GIVEN = re.compile(r"given ([\w-]+)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README: its language, its first line's number, its code, its comment."""

    language: str
    line: int  # of the opening fence, 1-based
    code: str
    directive: str | None

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def _blocks(text: str) -> list[Block]:
    """The README's fenced blocks in order, each with the ``readme-test`` comment right before its fence."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"README.md:{index + 1}: code block never closed")
        before = _DIRECTIVE.fullmatch(lines[index - 1].strip()) if index > 0 else None
        blocks.append(Block(opening.group(1), index + 1, "\n".join(lines[index + 1:end]) + "\n",
                            before.group(1) if before else None))
        index = end + 1
    return blocks


BLOCKS = _blocks(README.read_text(encoding="utf-8"))
PYTHON = [block for block in BLOCKS if block.language == "python"]

# Set-ups for ``<!-- readme-test: given NAME -->``: the names a fragment's prose takes as given.
GIVEN: dict[str, str] = {
    # The quick start's data and a network trained briefly on it, with its optimiser and loss.
    "digits-network": """
import numpy as np
import bpcore
from bpcore.layers import Dense, ReLU
from bpcore.losses import CrossEntropy
from bpcore.optim import Adam
from sklearn.datasets import load_digits

x, y = load_digits(return_X_y=True)
x, y = (x[:600] / 16.0).astype("float32"), y[:600]
classes = np.arange(10)
network = net = bpcore.Network([Dense(64, 32), ReLU(), Dense(32, 10)], seed=0)
opt, loss = Adam(net.parameters(), lr=1e-3), CrossEntropy()
net.fit(x, y, loss=loss, optimizer=opt, epochs=2, batch_size=64, seed=0, verbose=0)
""",
    # A deep Q-learning step's pieces: online network, optimiser, a prioritised replay batch.
    "dqn-batch": """
import numpy as np
import bpcore
from bpcore.layers import Dense, ReLU

rng = np.random.default_rng(0)
online = bpcore.Network([Dense(4, 16), ReLU(), Dense(16, 2)], seed=0)
target = online.clone()
opt = bpcore.optim.Adam(online.parameters(), lr=1e-3)
buffer = bpcore.rl.PrioritizedReplayBuffer(100, (4,), seed=0)
buffer.add(rng.standard_normal((50, 4)), rng.integers(0, 2, 50), rng.standard_normal(50),
           rng.standard_normal((50, 4)), rng.random(50) < 0.1)
obs, actions, rewards, next_obs, dones, weights, indices = buffer.sample(32)
td_target = bpcore.rl.DoubleQTarget(0.99)(online.forward(next_obs), target.forward(next_obs), rewards, dones)
""",
    # A module of backends/ops: its relative imports resolve there (the sandbox undoes what it declares).
    "ops-module": """
__package__ = "bpcore.backends.ops"
""",
    # A small classification data set for the scikit-learn estimators.
    "iris": """
from sklearn.datasets import load_iris

X, y = load_iris(return_X_y=True)
""",
}


def _previous_python(block: Block) -> Block:
    position = PYTHON.index(block)
    if position == 0:
        raise AssertionError(f"{block.name}: 'continues' but no ```python block comes before it")
    return PYTHON[position - 1]


def _chain(block: Block) -> list[Block]:
    """``block`` after the blocks it continues, first one first."""
    chain = [block]
    while chain[0].directive == "continues":
        chain.insert(0, _previous_python(chain[0]))
    return chain


def _check_directive(block: Block) -> None:
    directive = block.directive
    if directive is None or directive == "continues" or _SKIP.fullmatch(directive):
        return
    given = _GIVEN.fullmatch(directive)
    if given is None:
        raise AssertionError(
            f"{block.name}: unknown comment 'readme-test: {directive}'; "
            "expected 'continues', 'given NAME' or 'skip (REASON)'"
        )
    if given.group(1) not in GIVEN:
        raise AssertionError(f"{block.name}: no set-up named {given.group(1)!r}; known: {sorted(GIVEN)}")


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory, no network (a connection attempt raises), no lasting declarations."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a README example tried to open a network connection")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "OPERATIONS", dict(registry.OPERATIONS))  # declarations end with it
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tmp_path


@pytest.mark.parametrize("block", PYTHON, ids=[block.name for block in PYTHON])
def test_readme_python_block_runs(block: Block, sandbox: Path) -> None:
    _check_directive(block)
    chain = _chain(block)
    for part in chain:  # every block of the chain compiles, whether it runs or not
        compile(part.code, part.name, "exec")
    skipped = [part for part in chain if part.directive and _SKIP.fullmatch(part.directive)]
    if skipped:
        reason = _SKIP.fullmatch(skipped[0].directive or "")
        pytest.skip(f"{skipped[0].name}: {reason.group(1) if reason else ''}")
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    given = _GIVEN.fullmatch(chain[0].directive or "")
    with warnings.catch_warnings():
        # scikit-learn's estimators warn when a short example stops before convergence: not an error.
        warnings.filterwarnings("ignore", message=".*(converge|Maximum iterations).*")
        if given:
            exec(compile(GIVEN[given.group(1)], f"GIVEN[{given.group(1)!r}]", "exec"), namespace)
        for part in chain:
            exec(compile(part.code, part.name, "exec"), namespace)


def test_every_readme_test_comment_is_right_before_a_python_block() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    placed = {block.line - 1 for block in PYTHON if block.directive is not None}  # the comments' line numbers
    stray = [f"README.md:{number}" for number, line in enumerate(lines, start=1)
             if "readme-test" in line and number not in placed]
    assert not stray, f"a readme-test comment that is not on the line right before a ```python fence: {stray}"


def test_every_set_up_is_used() -> None:
    used = {match.group(1) for block in PYTHON if (match := _GIVEN.fullmatch(block.directive or ""))}
    assert used == set(GIVEN), f"set-ups no block uses: {sorted(set(GIVEN) - used)}"


def test_the_scripts_the_readme_names_exist() -> None:
    text = README.read_text(encoding="utf-8")
    commands = [block for block in BLOCKS if block.language in ("bash", "sh", "shell", "console")]
    script = re.compile(r"python\s+((?:examples|benchmarks)/\S+?\.py)\b")
    named = {path for block in commands for path in script.findall(block.code)}
    named |= set(re.findall(r"\b(examples/\w+\.py)\b", text))
    assert named, "expected the README to name its example scripts"
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"README names scripts that do not exist: {missing}"


def test_the_block_parser_sees_comments_chains_and_skips() -> None:
    text = (
        "intro\n```python\na = 1\n```\n<!-- readme-test: continues -->\n```python\nb = a + 1\n```\n"
        "<!-- readme-test: skip (needs a GPU) -->\n```python\nimport cupy\n```\n```bash\nls\n```\n"
    )
    first, second, third, shell = _blocks(text)
    assert (first.line, first.directive, first.code) == (2, None, "a = 1\n")
    assert (second.line, second.directive) == (6, "continues")
    assert _SKIP.fullmatch(third.directive or "") is not None and shell.language == "bash"
    with pytest.raises(AssertionError, match="never closed"):
        _blocks("```python\nx = 1\n")
    with pytest.raises(AssertionError, match="unknown comment"):
        _check_directive(Block("python", 3, "", "skip"))  # a skip needs its reason
    with pytest.raises(AssertionError, match="no set-up named"):
        _check_directive(Block("python", 3, "", "given nothing"))
