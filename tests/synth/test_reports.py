"""Tests of the phantom's free-text reports: determinism, coverage, notation, negations, typos.

The round-trip test reads the reports back with a small reference reader that
knows only the documented conventions (disc notation, ranges, synonyms); if the
writer ever produced an ambiguous or missing statement, it would fail.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from spineage.findings.vocabulary import DEGENERATIVE_SEVERITIES
from spineage.synth.reports import TYPOS, format_disc, vertebra_below, write_report

STANDARD = tuple(f"C{i}" for i in range(2, 8)) + tuple(f"T{i}" for i in range(1, 13)) + tuple(
    f"L{i}" for i in range(1, 6)
)
WITH_T13 = STANDARD[:18] + ("T13",) + STANDARD[18:]
WITH_L6 = STANDARD + ("L6",)

# -- a reference reader: the documented conventions, nothing else --------------------------

_V = r"(?:C|Th|T|D|L|S)\d{1,2}(?!-weighted| (?:disc )?signal| hyperintens)"
_EXPR = rf"\b{_V}(?:[/-](?:(?:C|Th|T|D|L|S)?\d{{1,2}})\b)*"
_DISC_KEYWORDS = {
    "disc_bulge": r"bulg",
    "disc_osteophyte_complex": r"disc[- ]osteophyte|\bDOCs?\b",
    "uncovertebral_osteophyte": r"uncovertebral",
    "protrusion": r"protru|herniat|\bhernias?\b",
    "extrusion": r"extru",
    "desiccation": r"desiccat|dehydrat|loss of T2 disc signal",
    "endplate_change": r"Modic|endplate",
    "annular_fissure": r"annular|high-intensity zone|\bHIZs?\b",
    "spinal_stenosis": r"stenosis",
}
_OTHER_KEYWORDS = {
    "fracture": r"fracture",
    "spondylolisthesis": r"listhesis",
    "bone_lesion": r"lesion",
    "cord_abnormality": r"cord signal|intramedullary|within the spinal cord|myelopathic",
    "soft_tissue_edema": r"o?edema",
    "congenital_canal_narrowing": r"congenital|developmentally",
    "scoliosis": r"scoliosis",
    "kyphosis_or_lordosis": r"kyphosis|lordosis|kyphotic",
    "transitional_vertebra": r"transitional",
    "tarlov_cyst": r"Tarlov",
}
_SEVERITY_WORDS = [
    ("near_complete", r"near[ -]complete|almost complete|nearly complete"),
    ("mild", r"\b(?:mild|slight|minimal)(?:ly)?\b"),
    ("moderate", r"\bmoderate(?:ly)?\b"),
    ("severe", r"\b(?:severe|marked|advanced)(?:ly)?\b"),
]
_LABEL = re.compile(
    r"^(?:(?:CERVICAL|THORACIC|DORSAL|LUMBAR) SPINE|(?:Cervical|Thoracic|Dorsal|Lumbar)(?: spine)?|"
    r"[CTL]-spine|FINDINGS|Findings|IMPRESSION|Impression|Conclusion|Other|Additionally|Technique):\s*"
)


# "L1/2 through L3/4: No disc herniation or stenosis.": the heading of a normal disc, listed level by level.
_NORMAL_DISC = re.compile(rf"^{_EXPR}(?: through {_EXPR})?: (?=No\b|Normal\b|normal\b|Unremarkable\b)")


def _level(name: str) -> str:
    return re.sub(r"^(?:Th|D)", "T", name)


def _severity(text: str, default: str = "present") -> str:
    for severity, pattern in _SEVERITY_WORDS:
        if re.search(pattern, text, flags=re.IGNORECASE):
            return severity
    return default


def _discs(text: str, levels: tuple[str, ...]) -> list[str]:
    """Disc keys (vertebra above) of every disc expression in ``text``, ranges expanded."""

    def walk(first: str, stop: str, inclusive: bool) -> list[str]:
        keys, key = [], first
        for _ in range(30):
            below = vertebra_below(key, levels)
            if inclusive:
                keys.append(key)
                if key == stop:
                    return keys
            else:
                keys.append(key)
                if below == stop:
                    return keys
            key = below
        raise AssertionError(f"cannot walk from {first} to {stop}")

    def expression(expr: str) -> list[str]:
        parts = re.split(r"([/-])", expr)
        names, seps = parts[0::2], parts[1::2]
        letters = re.match(r"[A-Za-z]+", names[0]).group(0)
        full = []
        for name in names:
            if name[0].isdigit():
                name = letters + name
            letters = re.match(r"[A-Za-z]+", name).group(0)
            full.append(_level(name))
        if seps and seps[0] == "-":
            return walk(full[0], full[1], inclusive=False)
        return full[:-1]

    keys: list[str] = []
    for through in re.finditer(rf"({_EXPR}) (?:to|through) ({_EXPR})", text):
        keys += walk(expression(through.group(1))[0], expression(through.group(2))[0], inclusive=True)
    text = re.sub(rf"({_EXPR}) (?:to|through) ({_EXPR})", " ", text)
    for match in re.finditer(_EXPR, text):
        keys += expression(match.group(0))
    return keys


def read_report(text: str, levels: tuple[str, ...]) -> set[tuple[str, str, str]]:
    """Recover (level, condition, severity) from a report written by :func:`write_report`."""
    found: set[tuple[str, str, str]] = set()
    for raw in re.split(r"(?<=\.)\s+|\n", text):
        sentence = _LABEL.sub("", re.sub(r"^\d+\.\s+", "", raw.strip())).strip()
        # "L1/2 through L3/4: No disc herniation or stenosis.": a normal disc, listed level by level.
        sentence = _NORMAL_DISC.sub("", sentence)
        if not sentence or re.match(r"^(?:No|Negative|Normal|normal|Unremarkable|Absent|Preservation)\b", sentence):
            continue
        if re.search(r"\b(?:unlikely to represent|has resolved|no longer seen|resolution of|is preserved|is maintained"
                     r"|conus)\b", sentence):
            continue  # hedges that deny, resolved findings and normal states
        other = [c for c, pattern in _OTHER_KEYWORDS.items() if re.search(pattern, sentence, flags=re.I)]
        if other:
            condition = other[0]
            vertebrae = [_level(m.group(0)) for m in re.finditer(rf"\b{_V}\b", sentence)]
            level = vertebrae[0] if vertebrae and vertebrae[0] != "S2" else ""
            severity = _severity(sentence)
            grade = re.search(r"grade (\d|III|II|I)\b", sentence, flags=re.I)
            if grade:
                severity = {"1": "mild", "I": "mild", "2": "moderate", "II": "moderate"}.get(
                    grade.group(1), "severe"
                )
            if condition == "spinal_stenosis" or condition in _DISC_KEYWORDS:
                raise AssertionError(sentence)
            found.add((level, condition, severity))
            continue
        mentions = [
            (m.start(), m.end(), c)
            for c, pattern in _DISC_KEYWORDS.items()
            for m in re.finditer(pattern, sentence, flags=re.I)
        ]
        if not mentions:
            continue
        head = re.match(r"^([^:]+): (.*)$", sentence)
        if head and any(re.search(p, head.group(1), flags=re.I) for p in _DISC_KEYWORDS.values()) and (
            ";" in sentence or re.match(r"^\S+(?: complete)? at ", head.group(2))
        ):
            condition = next(c for c, p in _DISC_KEYWORDS.items() if re.search(p, head.group(1), flags=re.I))
            for part in head.group(2).split("; "):
                for key in _discs(part, levels):
                    found.add((key, condition, _severity(part)))
            continue
        keys = _discs(sentence, levels)
        conditions = {}
        for start, _, condition in sorted(mentions):
            window = re.split(r",|;|:| and ", sentence[:start])[-1]
            conditions.setdefault(condition, _severity(window))
        for key in keys:
            for condition, severity in conditions.items():
                found.add((key, condition, severity))
    return found


# -- random findings, as the phantom might draw them ----------------------------------------


def random_findings(rng: np.random.Generator, levels: tuple[str, ...]) -> list[dict]:
    findings = []
    for condition, severities in DEGENERATIVE_SEVERITIES.items():
        cervical_only = condition == "uncovertebral_osteophyte"
        pool = [lv for lv in levels if lv.startswith("C")] if cervical_only else list(levels)
        count = int(rng.integers(0, 5))
        start = int(rng.integers(len(pool)))
        # Runs of neighbours are common in real spines, so draw a run plus a few strays.
        strays = rng.integers(len(pool), size=int(rng.integers(0, 3)))
        chosen = set(pool[start : start + count]) | {pool[int(i)] for i in strays}
        for level in sorted(chosen, key=levels.index):
            severity = severities[int(rng.integers(len(severities)))] if rng.random() < 0.4 else severities[0]
            findings.append({"level": level, "condition": condition, "severity": severity})
    stenosis_levels = {levels[int(i)] for i in rng.integers(len(levels), size=int(rng.integers(0, 3)))}
    for level in sorted(stenosis_levels, key=levels.index):
        severity = ("mild", "moderate", "severe")[int(rng.integers(3))]
        findings.append({"level": level, "condition": "spinal_stenosis", "severity": severity})
    vertebral = {
        "fracture": ("mild", "moderate", "severe"),
        "spondylolisthesis": ("mild", "moderate"),
        "cord_abnormality": ("present",),
        "bone_lesion": ("present",),
        "soft_tissue_edema": ("present",),
        "scoliosis": ("mild", "moderate", "severe"),
    }
    for condition, severities in vertebral.items():
        if rng.random() < 0.25:
            findings.append({
                "level": levels[int(rng.integers(len(levels)))],
                "condition": condition,
                "severity": severities[int(rng.integers(len(severities)))],
            })
    for condition in ("congenital_canal_narrowing", "kyphosis_or_lordosis", "tarlov_cyst"):
        if rng.random() < 0.2:
            findings.append({"level": "", "condition": condition, "severity": "present"})
    extra = [lv for lv in levels if lv in ("T13", "L6")]
    if extra:
        findings.append({"level": extra[0], "condition": "transitional_vertebra", "severity": "present"})
    return findings


def _stated(text: str, pattern: str) -> int:
    """How many sentences state (not deny) something matching ``pattern``."""
    sentences = [_NORMAL_DISC.sub("", _LABEL.sub("", s.strip())) for s in re.split(r"(?<=\.)\s+|\n", text)]
    return sum(
        1
        for s in sentences
        if re.search(pattern, s, flags=re.I) and not re.match(r"(No|Negative|Normal)\b", s)
    )


def _triples(findings: list[dict]) -> set[tuple[str, str, str]]:
    return {(f["level"], f["condition"], f["severity"]) for f in findings}


# -- tests ------------------------------------------------------------------------------------


def test_same_rng_state_gives_same_text_and_seeds_vary_it():
    findings = random_findings(np.random.default_rng(1), STANDARD)
    first = write_report(findings, STANDARD, np.random.default_rng(42))
    assert write_report(findings, STANDARD, np.random.default_rng(42)) == first
    texts = {write_report(findings, STANDARD, np.random.default_rng(seed)) for seed in range(60)}
    assert len(texts) >= 55


def test_order_of_findings_does_not_change_the_text():
    findings = random_findings(np.random.default_rng(2), STANDARD)
    assert write_report(findings, STANDARD, np.random.default_rng(5)) == write_report(
        findings[::-1], STANDARD, np.random.default_rng(5)
    )


def test_reports_read_back_to_the_findings_table():
    rng = np.random.default_rng(0)
    true_positives = false_positives = false_negatives = 0
    for i in range(300):
        levels = (STANDARD, WITH_T13, WITH_L6)[i % 3]
        findings = random_findings(rng, levels)
        text = write_report(findings, levels, rng)
        truth, read = _triples(findings), read_report(text, levels)
        assert read == truth, f"{text}\nmissed: {truth - read}\nspurious: {read - truth}"
        true_positives += len(truth & read)
        false_positives += len(read - truth)
        false_negatives += len(truth - read)
    assert true_positives > 3000


@pytest.mark.parametrize(
    "condition,severities",
    list(DEGENERATIVE_SEVERITIES.items()) + [("spinal_stenosis", ("mild", "moderate", "severe"))],
)
def test_each_disc_condition_is_named_with_its_disc_and_severity(condition, severities):
    disc_names = {"L2/3", "L2-3", "L2-L3", "L2/L3"}
    severity_words = {
        "present": r"",
        "mild": r"\b(mild|slight|minimal)",
        "moderate": r"\bmoderate",
        "severe": r"\b(severe|marked|advanced)",
        "near_complete": r"(near[ -]complete|almost complete|nearly complete)",
    }
    for severity in severities:
        for seed in range(15):
            text = write_report(
                [{"level": "L2", "condition": condition, "severity": severity}],
                STANDARD,
                np.random.default_rng(seed),
            )
            assert any(name in text for name in disc_names), text
            assert _stated(text, _DISC_KEYWORDS[condition]) == 1, text
            assert re.search(severity_words[severity], text, flags=re.IGNORECASE), text


@pytest.mark.parametrize(
    "level,condition,severity,pattern",
    [
        ("T11", "fracture", "moderate", r"\b(T|Th|D)11\b"),
        ("L4", "spondylolisthesis", "mild", r"L4 on L5|L4 anterolisthesis on L5|L4 retrolisthesis on L5"),
        ("C5", "cord_abnormality", "present", r"\bC5\b"),
        ("L2", "bone_lesion", "present", r"\bL2\b"),
        ("C4", "soft_tissue_edema", "present", r"\bC4\b"),
        ("T8", "scoliosis", "mild", r"\b(T|Th|D)8\b"),
        ("", "congenital_canal_narrowing", "present", r"narrow"),
        ("", "kyphosis_or_lordosis", "present", r"kyph|lordosis"),
        ("", "tarlov_cyst", "present", r"Tarlov"),
    ],
)
def test_each_other_finding_is_stated_once_with_its_level(level, condition, severity, pattern):
    for seed in range(20):
        text = write_report(
            [{"level": level, "condition": condition, "severity": severity}],
            STANDARD,
            np.random.default_rng(seed),
        )
        assert re.search(pattern, text, flags=re.I), text
        assert _stated(text, _OTHER_KEYWORDS[condition]) == 1, text
        assert read_report(text, STANDARD) == {(level, condition, severity)}, text


def test_supernumerary_vertebrae_are_named():
    for seed in range(10):
        l6 = write_report([{"level": "L6", "condition": "transitional_vertebra", "severity": "present"}],
                          WITH_L6, np.random.default_rng(seed))
        t13 = write_report([{"level": "T13", "condition": "transitional_vertebra", "severity": "present"}],
                           WITH_T13, np.random.default_rng(seed))
        assert "L6" in l6 and "transitional" in l6.lower(), l6
        assert re.search(r"(T|Th|D)13", t13) and "transitional" in t13.lower(), t13


def test_empty_findings_give_a_normal_report():
    for seed in range(40):
        text = write_report([], STANDARD, np.random.default_rng(seed))
        normal = r"unremarkable|no significant|normal (appearance|limits|mri)"
        assert re.search(normal, text, flags=re.I), text
        assert read_report(text, STANDARD) == set(), text


def test_consecutive_discs_are_written_as_a_range_at_least_sometimes():
    findings = [{"level": lv, "condition": "disc_bulge", "severity": "mild"} for lv in ("L3", "L4")]
    ranged = 0
    for seed in range(60):
        text = write_report(findings, STANDARD, np.random.default_rng(seed))
        if re.search(r"L3-L?5\b|L3/4/5|L3/4 (to|through) L4/5|L3-4 (to|through) L4-5", text):
            ranged += 1
        assert len(re.findall(r"bulg", text)) <= 2, text
    assert ranged >= 15


def test_disc_below_the_last_vertebra_of_a_region_is_named_across_the_junction():
    for seed in range(20):
        c7 = write_report([{"level": "C7", "condition": "protrusion", "severity": "mild"}], STANDARD,
                          np.random.default_rng(seed))
        l5 = write_report([{"level": "L5", "condition": "disc_bulge", "severity": "mild"}], STANDARD,
                          np.random.default_rng(seed))
        t12 = write_report([{"level": "T12", "condition": "disc_bulge", "severity": "mild"}], WITH_T13,
                           np.random.default_rng(seed))
        l5_of_six = write_report([{"level": "L5", "condition": "disc_bulge", "severity": "mild"}], WITH_L6,
                                 np.random.default_rng(seed))
        assert re.search(r"C7[/-](T|Th|D)1\b", c7), c7
        assert re.search(r"L5[/-]S1\b", l5), l5
        assert re.search(r"(T|Th|D)12[/-]((T|Th|D)?13)\b", t12), t12
        # (L6/S1 may be listed as a normal disc, level by level; L5/S1 never exists.)
        assert re.search(r"L5[/-]L?6\b", l5_of_six) and not re.search(r"L5[/-]S1", l5_of_six), l5_of_six
    assert format_disc("C7", STANDARD) == "C7/T1"
    assert format_disc("L5", STANDARD) == "L5/S1"
    assert format_disc("L5", WITH_L6) == "L5/6"
    assert format_disc("T13", WITH_T13) == "T13/L1"
    assert vertebra_below("T12", STANDARD) == "L1"
    # A partial spine: the region decides what lies below its last vertebra.
    assert vertebra_below("C7", STANDARD[:6]) == "T1"
    assert vertebra_below("T12", ("T11", "T12")) == "L1"
    assert vertebra_below("L5", ("L4", "L5")) == "S1"


def test_negations_never_deny_a_present_condition():
    rng = np.random.default_rng(7)
    negated_keywords = dict(_DISC_KEYWORDS, **_OTHER_KEYWORDS)
    negated_keywords["spinal_stenosis"] = r"stenosis|canal is of normal width"
    denied_by = {"protrusion": r"herniat", "extrusion": r"herniat|extru"}
    negations_seen = 0
    for _ in range(300):
        findings = random_findings(rng, STANDARD)
        present = {f["condition"] for f in findings}
        text = write_report(findings, STANDARD, rng)
        for sentence in re.split(r"(?<=\.)\s+|\n", text):
            sentence = _LABEL.sub("", sentence.strip())
            if not re.search(r"^(No|Negative for)\b|\bnormal width\b", sentence):
                continue
            negations_seen += 1
            for condition in present:
                pattern = denied_by.get(condition, negated_keywords[condition])
                assert not re.search(pattern, sentence), f"{sentence!r} denies present {condition}\n{text}"
    assert negations_seen > 100


def test_at_most_one_typo_in_about_a_fifth_of_reports():
    rng = np.random.default_rng(11)
    with_typo = 0
    n = 600
    for i in range(n):
        findings = random_findings(rng, STANDARD) if i % 2 else []
        text = write_report(findings, STANDARD, rng)
        typos = sum(len(re.findall(rf"\b{t}\b", text, flags=re.IGNORECASE)) for t in TYPOS.values())
        typos += text.count("  ")
        assert typos <= 1, text
        with_typo += typos
    assert 0.12 <= with_typo / n <= 0.28


def test_findings_outside_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match="desiccation"):
        write_report([{"level": "L4", "condition": "desiccation", "severity": "present"}], STANDARD,
                     np.random.default_rng(0))
    with pytest.raises(ValueError, match="without"):
        write_report([{"level": "L4", "condition": "disc_bulge"}], STANDARD, np.random.default_rng(0))
