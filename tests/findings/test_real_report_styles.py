"""The report reader on the phrasings of real spine MRI reports (issue [7/12]), one failure class at a time."""

from __future__ import annotations

import pytest

from spineage.findings.report_reader import read_report


def rows(text: str) -> list[tuple]:
    """(level, condition, severity, negated, uncertain, mapped) of every row, in order."""
    frame = read_report(text, "r1")
    return [
        (r.level, r.condition, r.severity, bool(r.negated), bool(r.uncertain), bool(r.mapped))
        for r in frame.itertuples()
    ]


def present(text: str) -> set[tuple[str, str]]:
    """(level, condition) of the mapped rows read as present (neither negated nor uncertain)."""
    return {(lv, c) for lv, c, _s, neg, unc, m in rows(text) if m and not neg and not unc}


def conditions(text: str) -> set[str]:
    return {c for _lv, c in present(text)}


# --------------------------------------------------------------------------- level-by-level lists


@pytest.mark.parametrize(
    "text, expected",
    [
        ("L1/L2: disc height loss, desiccation and a mild circumferential bulge.",
         {("L1", "desiccation"), ("L1", "disc_bulge")}),
        ("T12-L1 through L2-L3: mild disc desiccation.",
         {("T12", "desiccation"), ("L1", "desiccation"), ("L2", "desiccation")}),
        ("L4-L5 and L5-S1: small disc bulges.", {("L4", "disc_bulge"), ("L5", "disc_bulge")}),
        ("L3-4 - mild disc bulge, no stenosis.", {("L3", "disc_bulge")}),
        ("L4-5 disc level: broad-based protrusion.", {("L4", "protrusion")}),
        # A heading without a colon: a disc opening the line, then a capital.
        ("C4-C5 Disc bulge. Uncinate spurring with mild foraminal narrowing.",
         {("C4", "disc_bulge"), ("C4", "uncovertebral_osteophyte")}),
        # A heading alone on its line heads the lines below it, until a blank line.
        ("L4-L5:\nThere is a disc extrusion.\nAlso desiccation.\n\nMild disc bulge L2/3.",
         {("L4", "extrusion"), ("L4", "desiccation"), ("L2", "disc_bulge")}),
        # "At L4-5" with or without a comma gives its level to the line's next sentences.
        ("At C6-7 a disc osteophyte complex narrows the canal. Uncovertebral spurs narrow the foramina.",
         {("C6", "disc_osteophyte_complex"), ("C6", "uncovertebral_osteophyte"), ("C6", "spinal_stenosis")}),
    ],
)
def test_level_by_level_lists(text, expected):
    assert present(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # Disc levels that no finding took, in a clause whose disc findings name none.
        ("The degenerate C6/7 disc with a posterior annular tear.", {("C6", "annular_fissure")}),
        # A disc finding in a later clause of the sentence takes the disc levels of the one before.
        ("The L3-4 disc is desiccated, with a shallow broad bulge.", {("L3", "desiccation"), ("L3", "disc_bulge")}),
        ("Grade 1 anterolisthesis of L4 on L5, with uncovering of the disc and a mild bulge.",
         {("L4", "spondylolisthesis"), ("L4", "disc_bulge")}),
        # A single vertebra names no disc; a line's heading comes first.
        ("The conus ends at L1, with a small disc bulge.", {("", "disc_bulge")}),
    ],
)
def test_a_disc_finding_without_a_level_takes_the_disc_its_sentence_names(text, expected):
    assert present(text) == expected


def test_a_level_list_running_on_past_a_comma_stays_with_its_finding():
    text = "Disc bulges are seen at C3-4, C4-5 and C5-6 indenting the thecal sac."
    assert present(text) == {("C3", "disc_bulge"), ("C4", "disc_bulge"), ("C5", "disc_bulge")}


def test_a_list_of_levels_after_at_is_not_a_heading():
    assert present("At C4/5 and C5/6 there are disc bulges.") == {("C4", "disc_bulge"), ("C5", "disc_bulge")}


def test_nerve_roots_are_not_levels_of_a_finding():
    text = "L4/L5: a shallow protrusion contacting the traversing left L5 nerve root."
    assert present(text) == {("L4", "protrusion")}
    assert present("Disc extrusion at L5-S1 compressing the S1 root.") == {("L5", "extrusion")}


# --------------------------------------------------------------------------- synonyms


@pytest.mark.parametrize(
    "text, condition",
    [
        ("uncovertebral spurring C5/6", "uncovertebral_osteophyte"),
        ("uncinate spurring at C5-6", "uncovertebral_osteophyte"),
        ("uncovertebral hypertrophy at C5-6", "uncovertebral_osteophyte"),
        ("bilateral uncovertebral joint arthropathy at C5-6", "uncovertebral_osteophyte"),
        ("spurring of the uncovertebral joints at C5-6", "uncovertebral_osteophyte"),
        ("hypertrophy of the left uncovertebral joint at C5-6", "uncovertebral_osteophyte"),
        ("spur-disk complex at C5-6", "disc_osteophyte_complex"),
        ("disc/osteophyte complex at C5-6", "disc_osteophyte_complex"),
        ("disc-spur complex at C5-6", "disc_osteophyte_complex"),
        ("osteophyte-disc complex at C5-6", "disc_osteophyte_complex"),
        ("bony ridging at C5-6", "disc_osteophyte_complex"),
        ("the L4-5 disc is desiccated", "desiccation"),
        ("disc dessication L4-5", "desiccation"),
        ("decreased T2 signal in the L4-5 intervertebral disc", "desiccation"),
        ("loss of normal T2 signal within the C5-6 disc", "desiccation"),
        ("mild loss of disc height and signal at L4-5", "desiccation"),
        ("dark disc at L4-5", "desiccation"),
        ("annular tear at L4-5", "annular_fissure"),
        ("annular fissuring at L4-5", "annular_fissure"),
        ("radial annular tear at L4-5", "annular_fissure"),
        ("tear of the posterior annulus at L4-5", "annular_fissure"),
        ("fissure in the annulus fibrosus at L4-5", "annular_fissure"),
        ("endplate irregularity at T8-9", "endplate_change"),
        ("end plate sclerosis at L4-5", "endplate_change"),
    ],
)
def test_synonyms_of_real_reports(text, condition):
    assert conditions(text) == {condition}
    assert all(level for level, _c in present(text))


# --------------------------------------------------------------------------- stenosis


@pytest.mark.parametrize(
    "text",
    [
        "moderate left neural foraminal narrowing at L4-5",
        "severe bilateral foraminal stenosis L5-S1",
        "mild subarticular recess narrowing at L4-5",
        "right lateral recess stenosis at L4-5",
        "narrowing of the left neural foramen at C5-6",
        "the foramina are mildly narrowed",
        "mild right greater than left neuroforaminal stenosis",
    ],
)
def test_foraminal_and_recess_narrowing_is_not_central_stenosis(text):
    found = rows(text)
    assert not any(c == "spinal_stenosis" for _lv, c, *_ in found)
    assert [m for *_, m in found] == [False]  # kept as unmapped text


@pytest.mark.parametrize(
    "text, severity",
    [
        ("mild central canal and moderate bilateral foraminal stenosis at L3-4", "mild"),
        ("moderate bilateral foraminal and mild central canal stenosis at L3-4", "mild"),
        ("severe spinal canal stenosis with bilateral foraminal narrowing at L4-5", "severe"),
        ("the central canal is moderately narrowed at L4-5", "moderate"),
        ("moderate narrowing of the spinal canal at L4-5", "moderate"),
    ],
)
def test_central_stenosis_beside_foraminal_narrowing(text, severity):
    stenosis = [r for r in rows(text) if r[1] == "spinal_stenosis"]
    assert stenosis and all(r[2] == severity and not r[3] for r in stenosis)


def test_denied_central_and_foraminal_stenosis():
    found = rows("No central canal or foraminal stenosis.")
    assert [(c, neg) for _lv, c, _s, neg, _u, m in found if m] == [("spinal_stenosis", True)]
    assert all(m for *_, m in found)  # a denied out-of-vocabulary term leaves no unmapped row


@pytest.mark.parametrize(
    "text",
    [
        "mild cord compression at C5-6",
        "flattening of the ventral cord at C5-6",
        "mild cord flattening",
        "the disc osteophyte complex compresses the cord",
        "mass effect on the spinal cord",
    ],
)
def test_cord_compression_is_stenosis_not_a_cord_abnormality(text):
    assert conditions(text) - {"disc_osteophyte_complex"} == {"spinal_stenosis"}


@pytest.mark.parametrize(
    "text",
    [
        "T2 hyperintense signal within the cord at C5-6, consistent with myelomalacia",
        "abnormal cord signal at C4",
        "increased T2 signal in the spinal cord at C3",
        "cord edema at C5",
        "small syrinx from C5 to C7",
    ],
)
def test_cord_signal_change_is_a_cord_abnormality(text):
    assert conditions(text) == {"cord_abnormality"}


# --------------------------------------------------------------------------- normal states, hedges, resolutions


@pytest.mark.parametrize(
    "text, condition",
    [
        ("Preservation of the normal lumbar lordosis.", "kyphosis_or_lordosis"),
        ("Lordosis is preserved.", "kyphosis_or_lordosis"),
        ("Maintained cervical lordosis.", "kyphosis_or_lordosis"),
        ("Normal thoracic kyphosis.", "kyphosis_or_lordosis"),
        ("Small haemangioma in L2, unlikely to represent metastasis.", "bone_lesion"),
        ("The L4/5 disc herniation is no longer seen.", "protrusion"),
        ("Interval resolution of the endplate oedema at L3/4.", "endplate_change"),
        ("The previously seen disc extrusion at L5/S1 has resolved.", "extrusion"),
        ("Absent Modic changes.", "endplate_change"),
        ("The cord edema has since resolved.", "cord_abnormality"),
        ("Metastatic disease is considered unlikely.", "bone_lesion"),
        ("A small focus of fatty marrow in L3 is unlikely to represent metastasis.", "bone_lesion"),
        ("Lordosis is preseved.", "kyphosis_or_lordosis"),  # a typo of the cue word
        ("The sequestered fragment at L5/S1 has resorbed.", "extrusion"),
        ("Interval resorption of the C5/6 extrusion.", "extrusion"),
        ("Mild canal stenosis at C3/4 is questioned, partly artefact.", "spinal_stenosis"),
        ("A compression fracture of T7 was queried on radiographs.", "fracture"),
        ("An annular fissure at L4/5 is equivocal.", "annular_fissure"),
    ],
)
def test_normal_states_hedges_and_resolutions_are_not_present(text, condition):
    found = [r for r in rows(text) if r[1] == condition]
    assert found, text
    if condition == "bone_lesion" and "haemangioma" in text:
        assert ("L2", "bone_lesion") in present(text)  # the haemangioma is, the metastasis is not
        found = [r for r in rows("unlikely to represent metastasis") if r[1] == condition]
    assert all(r[3] or r[4] for r in found), found


@pytest.mark.parametrize(
    "text",
    [
        "Intradural lesion at L3, schwannoma or less likely metastases.",
        "Hemangioma versus metastasis in T10.",
        "Findings concerning for metastasis at T10.",
        "Possible metastasis at T10.",
    ],
)
def test_hedged_bone_lesions_are_not_present(text):
    assert "bone_lesion" not in conditions(text)


def test_a_persisting_finding_beside_a_resolved_one_stays():
    text = "The L5/S1 extrusion has resolved. Persistent mild disc bulge at L4/5."
    assert present(text) == {("L4", "disc_bulge")}


# --------------------------------------------------------------------------- levels outside the spine, typos


def test_levels_outside_the_vocabulary_do_not_map_a_disc_finding():
    found = rows("Disc protrusions L9/10 and C1/2 and S1/2.")
    assert [(c, m) for _lv, c, _s, _n, _u, m in found] == [("", False)]
    # Other findings keep their level-less row, as before.
    assert present("Tarlov cyst at S2") == {("", "tarlov_cyst")}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("L45: mild disc bulge.", ("L4", "disc_bulge")),
        ("disc protrusion at L5S1", ("L5", "protrusion")),
        ("C7-T! disc osteophyte complex", ("C7", "disc_osteophyte_complex")),
        ("C7-TI disc osteophyte complex", ("C7", "disc_osteophyte_complex")),
        ("C4-CS: diffuse disc bulging", ("C4", "disc_bulge")),
        ("MILD DISC BULGE AT L3-4", ("L3", "disc_bulge")),
        ("disk herniation at C56", ("C5", "protrusion")),
    ],
)
def test_typed_levels_and_capitals(text, expected):
    assert present(text) == {expected}


def test_severity_across_a_pair_of_places():
    assert rows("Large central and right paracentral disc herniation at L5-S1.")[0][:3] == ("L5", "protrusion", "severe")
