"""Every measured figure in the README is read from a results file that a named command writes.

A number typed into the README from one run is a promise the next run breaks. So a measured figure is quoted
next to a marker naming its file and keys::

    `default` costs 6.4 % (5.1 to 7.9 %) <!-- source: docs/results/bench_diagnostics.json: default.cost_pct.median
    default.cost_pct.min default.cost_pct.max -->

and these tests read the file. A marker's *scope* is the README text from the previous marker or the previous blank
line outside a code block, whichever is later, up to the marker (so a marker on the line after a code block or a
table covers it). Keys are dotted paths into the file (``values.`` may be left out); by the kind of value:

* a number must appear, written as the README writes it (its decimals, or its mantissa digits for ``1e-8``), among
  the scope's numbers, in the keys' order: a stale figure fails;
* a string (an error line, the machine's summary) must appear verbatim in the scope (whitespace collapsed);
* a list of strings (a program's printed lines, a report's table rows) must contain every code-block line and table
  row of the scope (a line ``...`` stands for lines left out).

What is *not* sourced is caught too: a number that looks measured (decimals, scientific notation, a percentage,
seconds, a speed-up) outside inline code, command lines and ``bash`` blocks must lie in a sourced scope and be one
of its keys' values, or lie in one of ``FIXED``'s snippets, each with the reason it is a fixed fact (an option's
value, a paper's setting, a threshold a test asserts). Integers without a unit (counts, sizes, epochs) are not
checked unless a marker names them. Each results file names the command that rewrites it, which ``make
readme-numbers`` runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from benchmarks.readme_results import report_rows
from benchmarks.results_io import spread

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

MARKER = re.compile(r"(?<!`)<!--\s*source:\s*(?P<file>\S+?\.json)\s*:\s*(?P<keys>.*?)\s*-->", re.S)
NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?(?!\w)")
#: the unit or word after a number that makes an integer look measured: a percentage, a duration, a rate, a speed-up
MEASURED_UNIT = re.compile(r"\s?(?:%|s\b|seconds?\b|min\b|minutes?\b|ms\b|h\b|hours?\b|/s\b|[x×]\s+(?:faster|slower|"
                           r"less|more)\b|images/s|steps/s)")

#: README snippets whose numbers are fixed facts, not measurements: snippet -> why
FIXED: dict[str, str] = {
    "Python 3.10+": "the supported Python versions (pyproject.toml)",
    "reaches at least 95 % validation and test accuracy": "the threshold the slow test asserts "
    "(test_the_default_run_reaches_the_accuracy_the_readme_states; checked below)",
    "(10 %)": "the default of data.val_fraction (conf/data/voc.yaml)",
    "horizontal flip with probability 0.5": "conf/augment/flip.yaml",
    "flip with probability `augment.flip` (0.5)": "conf/augment/crop_flip.yaml",
    "brightness ±0.2, contrast ×U(0.8, 1.2) around the image mean, saturation ×U(0.8, 1.2)": "conf/augment/jitter.yaml",
    "std 0.1 in standardised units": "conf/augment/noise.yaml",
    "95 %": "the confidence level of every interval the report prints",
    "SGD, momentum 0.9, weight decay 1e-4": "He et al. 2016's setting (Sec. 4.2), reproduced by scale=paper",
    "lr 0.1, ÷10": "He et al. 2016's setting (Sec. 4.2)",
    "warmed up at 0.01": "He et al. 2016's setting (Sec. 4.2)",
    "(sigmoid < 0.01 or > 0.99, tanh \\|a\\| > 0.98)": "the saturation thresholds of diagnostics/activations.py",
    "1e4 (null: non-finite only)": "the default of diagnostics.guard.max_grad_norm",
    "the floor, about 1e-8": "the one-cycle schedule's final rate: optimizer.lr / div_factor / final_div_factor "
    "(0.004 / 25 / 1e4)",
    "24000 images (4500.2 MiB as tensors)": "folder_data.sample_bytes of the example it states (checked below)",
}


# -- reading the README ---------------------------------------------------------------------------------------------


@dataclass
class Scope:
    """One marker: its file, keys and the README text it covers (offsets into the README)."""

    file: str
    keys: list[str]
    start: int
    end: int
    line: int
    covered: list[tuple[int, int]] = field(default_factory=list)


def fenced_lines(text: str) -> list[tuple[int, int, str | None]]:
    """(start offset, end offset, fence info or None) of every line; fence lines themselves carry their own info."""
    out, fence, offset = [], None, 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("```"):
            info = stripped[3:].strip() or "plain"
            out.append((offset, offset + len(line), info))
            fence = None if fence is not None else info
        else:
            out.append((offset, offset + len(line), fence))
        offset += len(line)
    return out


def scopes(text: str) -> list[Scope]:
    """Every source marker with the text it covers."""
    lines = fenced_lines(text)
    blanks = [s for s, e, fence in lines if fence is None and not text[s:e].strip()]
    found, previous = [], 0
    for m in MARKER.finditer(text):
        start = max([previous, *[b for b in blanks if b < m.start()]])
        line = text.count("\n", 0, m.start()) + 1
        found.append(Scope(m["file"], m["keys"].split(), start, m.start(), line))
        previous = m.end()
    return found


def lookup(record: dict[str, Any], key: str) -> Any:
    """A dotted key of a results file; keys outside the file's top level are read under ``values``."""
    node: Any = record if key.split(".")[0] in record else record["values"]
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def normal(token: str) -> str:
    """A number as written, normalised for comparison: one minus sign, exponent without sign padding, no -0."""
    token = token.replace("−", "-")
    if re.search(r"\de", token, re.I):
        mantissa, exponent = re.split(r"[eE]", token)
        token = f"{mantissa}e{int(exponent)}"
    return token[1:] if re.fullmatch(r"-0(\.0+)?(e.*)?", token) else token


def written_like(value: float, token: str) -> str:
    """``value`` written as the README wrote ``token``: the same decimals, thousands separators or mantissa digits."""
    token = token.replace("−", "-")
    m = re.fullmatch(r"-?([\d,]+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?", token)
    if m is None:
        raise ValueError(f"not a number: {token!r}")
    decimals = len(m[2] or "")
    if m[3] is not None:
        return normal(f"{value:.{decimals}e}")
    return normal(f"{value:,.{decimals}f}" if "," in m[1] else f"{value:.{decimals}f}")


def check_scope(text: str, scope: Scope, repo: Path = REPO) -> list[str]:
    """Compare one marker's figures with its file; returns the problems (and fills ``scope.covered``)."""
    path = repo / scope.file
    if not path.is_file():
        return [f"README line {scope.line}: {scope.file} does not exist; write it (make readme-numbers)"]
    record = json.loads(path.read_text())
    body = text[scope.start:scope.end]
    tokens = [(m.start() + scope.start, m.end() + scope.start, m.group()) for m in NUMBER.finditer(body)]
    problems, at = [], 0
    for key in scope.keys:
        try:
            value = lookup(record, key)
        except KeyError:
            problems.append(f"README line {scope.line}: {scope.file} has no key {key}")
            continue
        if isinstance(value, bool) or value is None:
            problems.append(f"README line {scope.line}: {scope.file}'s {key} is {value!r}, not a figure")
        elif isinstance(value, int | float):
            same = [i for i in range(at, len(tokens)) if written_like(value, tokens[i][2]) == normal(tokens[i][2])]
            match = same[0] if same else None
            if match is None:
                shown = [t for _, _, t in tokens[at:]]
                problems.append(f"README line {scope.line}: {scope.file}'s {key} is {value!r}, which the README does "
                                f"not quote (its numbers there: {shown}); copy it from the file, or rerun "
                                f"`{record.get('command')}` if the file is stale")
            else:
                scope.covered.append(tokens[match][:2])
                at = match + 1
        elif isinstance(value, str):
            found = re.search(r"\s+".join(map(re.escape, value.split())), body)
            if found is None:
                problems.append(f"README line {scope.line}: {scope.file}'s {key} ({value!r}) is not in the text it "
                                "marks; copy it from the file")
            else:
                scope.covered.append((scope.start + found.start(), scope.start + found.end()))
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            allowed = {v.rstrip() for v in value}
            offset = scope.start
            for line in body.splitlines(keepends=True):
                start, content = offset, line.rstrip("\n").rstrip()
                offset += len(line)
                if not _quoted_line(text, start, content):
                    continue
                if content.strip() == "..." or content in allowed:
                    scope.covered.append((start, start + len(content)))
                else:
                    problems.append(f"README line {text.count(chr(10), 0, start) + 1}: {content.strip()!r} is not a "
                                    f"line of {scope.file}'s {key}; copy the block from the file")
        else:
            problems.append(f"README line {scope.line}: {scope.file}'s {key} is a {type(value).__name__}, not a figure")
    return problems


def _quoted_line(text: str, start: int, content: str) -> bool:
    """A line copied from a program: inside a fenced block (not the fence itself), or a Markdown table row."""
    if not content.strip() or content.strip().startswith("```") or MARKER.search(content):
        return False
    if content.lstrip().startswith("|"):
        return True
    for s, e, fence in fenced_lines(text):
        if s <= start < e:
            return fence is not None and not text[s:e].strip().startswith("```")
    return False


def measured_looking(text: str) -> list[tuple[int, int, str]]:
    """Numbers that look measured, outside inline code, links, headings, comments, commands and ``bash`` blocks."""
    found = []
    blanked = re.sub(r"<!--.*?-->", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    for start, end, fence in fenced_lines(text):
        line = blanked[start:end]
        stripped = line.strip()
        if stripped.startswith(("```", "#", "$ ", "python ", "make ", "bash ")) or line.startswith("    "):
            continue
        if fence is not None and fence != "text":
            continue
        masked = re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group()), line)
        masked = re.sub(r"\]\([^)\n]*\)", lambda m: " " * len(m.group()), masked)
        for m in NUMBER.finditer(masked):
            token, after = m.group(), masked[m.end():m.end() + 16]
            if re.search(r"[.eE]", token.replace(",", "")) or MEASURED_UNIT.match(after):
                found.append((start + m.start(), start + m.end(), token))
    return found


# -- the tests ------------------------------------------------------------------------------------------------------


def test_every_sourced_figure_is_its_files() -> None:
    text = README.read_text()
    problems = [p for scope in scopes(text) for p in check_scope(text, scope)]
    assert not problems, "\n".join(problems)


def test_no_measured_looking_number_without_a_source_or_a_reason() -> None:
    text = README.read_text()
    covered: list[tuple[int, int]] = []
    for scope in scopes(text):
        check_scope(text, scope)
        covered += scope.covered
    for snippet in FIXED:
        covered += [(m.start(), m.end()) for m in re.finditer(re.escape(snippet), text)]
    loose = [(s, token) for s, e, token in measured_looking(text) if not any(a <= s and e <= b for a, b in covered)]
    lines = [f"README line {text.count(chr(10), 0, s) + 1}: {token!r} in "
             f"{text[text.rfind(chr(10), 0, s) + 1:text.find(chr(10), s)].strip()[:140]!r}" for s, token in loose]
    assert not lines, ("numbers that look measured but have no source marker (<!-- source: docs/results/<file>.json: "
                       "<keys> -->) and no entry in FIXED:\n" + "\n".join(lines))


def test_every_fixed_snippet_is_still_in_the_readme() -> None:
    text = README.read_text()
    assert not [s for s in FIXED if s not in text], "FIXED entries the README no longer has: remove them"


def test_every_results_file_names_its_command_and_machine_and_make_regenerates_it() -> None:
    files = sorted({scope.file for scope in scopes(README.read_text())})
    assert files, "the README quotes no results file"
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nreadme-numbers:", 1)[1].split("\n\n", 1)[0]
    for name in files:
        record = json.loads((REPO / name).read_text())
        assert {"command", "date", "machine", "values"} <= record.keys(), name
        assert record["machine"]["summary"] and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+Z", record["date"]), name
        script = next(w for w in record["command"].split() if w.endswith(".py"))
        assert (REPO / script).is_file(), f"{name}: its command names {script}, which does not exist"
        item = Path(name).stem
        assert script in recipe and (name in recipe or item in recipe or " all" in recipe), \
            f"make readme-numbers does not regenerate {name} ({record['command']})"


def test_measured_figures_are_quoted_with_their_spread() -> None:
    """A marker that quotes a median also quotes the range it came with, so one run's value is never the claim."""
    for scope in scopes(README.read_text()):
        medians = {k.rsplit(".", 1)[0] for k in scope.keys if k.endswith(".median")}
        for stem in medians:
            assert {f"{stem}.min", f"{stem}.max"} <= set(scope.keys), \
                f"README line {scope.line}: {stem}.median is quoted without {stem}.min and {stem}.max"


def test_the_default_runs_threshold_is_the_slow_tests() -> None:
    source = (REPO / "tests" / "test_training.py").read_text()
    assert 'record["metrics"]["val/acc"] >= 0.95 and record["metrics"]["test/acc"] >= 0.95' in source


def test_the_streaming_example_line_is_the_formula_of_folder_data() -> None:
    """The README's 'N images (X MiB as tensors)' example: float32 RGB images plus an int64 label, as sample_bytes."""
    text = README.read_text()
    m = re.search(r"(\d+) RGB images at `data.image_size=(\d+)`.*?\n```text\n\1 images \(([\d.]+) MiB as tensors\)",
                  text, re.S)
    assert m, "the streaming example no longer states its image count and size"
    images, size = int(m[1]), int(m[2])
    assert f"{images * (4 * 3 * size**2 + 8) / 2**20:.1f}" == m[3]


# -- the checker itself ---------------------------------------------------------------------------------------------


def test_written_like_follows_the_readmes_precision() -> None:
    assert written_like(6.4213, "6.4") == "6.4" and written_like(0.0952, "0.10") == "0.10"
    assert written_like(-0.08, "−0.1") == "-0.1" and written_like(-0.04, "0.0") == "0.0"
    assert written_like(8.5e8, "5.76e+09") == "8.50e8" != normal("5.76e+09")
    assert written_like(1.3e-8, "1e-8") == normal("1e-8") and written_like(6e-9, "1e-8") != normal("1e-8")
    assert written_like(155670, "155,670") == "155,670" and written_like(636, "636") == "636"


def test_a_stale_figure_and_an_unsourced_one_are_both_caught(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    cost = {"median": 6.42, "min": 5.1, "max": 7.94}
    results.write_text(json.dumps({"command": "python x.py", "values": {"cost": cost, "line": "error: 8.5e+08"}}))
    fresh = ("Costs 6.4 % (5.1 to 7.9 %) <!-- source: r.json: cost.median cost.min cost.max -->\n\n"
             "```text\nerror: 8.5e+08\n```\n<!-- source: r.json: line -->\n")
    (scope_a, scope_b) = scopes(fresh)
    assert check_scope(fresh, scope_a, tmp_path) == [] and check_scope(fresh, scope_b, tmp_path) == []
    assert len(scope_a.covered) == 3 and scope_b.covered
    stale = fresh.replace("6.4 %", "16 %")
    assert "cost.median is 6.42" in check_scope(stale, scopes(stale)[0], tmp_path)[0]
    assert [t for _, _, t in measured_looking("the cost is 12.5 % here\n")] == ["12.5"]
    assert measured_looking("`optimizer.lr=1e4` and 8 epochs\n```bash\npython -m x 0.5\n```\n") == []


def test_the_results_files_keep_the_reports_columns_and_a_spread() -> None:
    report = ("# Report\n\n| group | n | test/acc | val/acc | params |\n|---|---:|---:|---:|---:|\n"
              "| activation=relu | 3 | 0.91 ± 0.01 | 0.90 ± 0.02 | 1000 |\n\nafter\n")
    assert report_rows(report, ("group", "n", "val/acc")) == [
        "| group | n | val/acc |", "|---|---:|---:|", "| activation=relu | 3 | 0.90 ± 0.02 |"]
    with pytest.raises(SystemExit):
        report_rows(report, ("group", "vanishing_ratio"))
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


@pytest.mark.slow  # runs python -m experiments.inspect --effective-rf (seconds)
def test_the_inspect_block_is_what_inspect_prints_today(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "benchmarks/readme_results.py", "inspect", "--out", str(tmp_path)], cwd=REPO,
                   check=True, capture_output=True)
    fresh = json.loads((tmp_path / "inspect.json").read_text())["values"]
    assert fresh == json.loads((REPO / "docs" / "results" / "inspect.json").read_text())["values"]
