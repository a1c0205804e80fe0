"""ROI/segment names → labels: synonyms, patterns, tiers, missing, ambiguous, unmapped; the pipeline syntax."""

from __future__ import annotations

import pytest

from medseg.errors import ConfigError
from medseg.io.roi_names import match_names, parse_label_names
from medseg.pipeline import Pipeline

SPEC = {1: ["liver", "Liver", "LIVER*"], 2: ["kidney_l", "Kidney_L", "Lt Kidney"]}


def test_synonyms_and_patterns():
    m = match_names(["BODY", "LIVER_final ", "Lt Kidney", "Couch"], SPEC)
    assert m.index_of == {1: 1, 2: 2} and m.missing == [] and m.ambiguous == {}
    assert m.unmapped == ["BODY", "Couch"]


def test_exact_names_win_over_patterns_and_case_is_a_last_resort():
    assert match_names(["LIVER_old", "Liver"], SPEC).index_of == {1: 1}  # exact beats the pattern
    assert match_names(["LIVER_old", "LIVER_new"], SPEC).ambiguous == {1: ["LIVER_old", "LIVER_new"]}
    assert match_names(["lt kidney"], SPEC).index_of == {2: 0}  # only a case-blind match: taken
    assert match_names(["liver", "LIVER"], {1: ["hepar", "Liver"]}).ambiguous == {1: ["liver", "LIVER"]}


def test_missing_ambiguous_and_shared_rois_are_explained():
    m = match_names(["Liver", "Liver"], SPEC)  # two ROIs with one name
    assert m.ambiguous == {1: ["Liver", "Liver"]} and m.missing == [2]
    lines = m.problems(SPEC)
    assert lines[0] == "no ROI matches label 2 ('kidney_l', 'Kidney_L', 'Lt Kidney')"
    assert "label 1 ('liver', 'Liver', 'LIVER*') is ambiguous: 'Liver', 'Liver' all match" in lines[1]
    shared = match_names(["Kidney_L"], {1: ["Kidney*"], 2: ["Kidney_L"]})
    assert set(shared.ambiguous) == {1, 2} and "also claimed by label 2" in shared.ambiguous[1][0]


def test_parse_label_names():
    assert parse_label_names({1: "liver", "2": ["kidney", "Kidney*"]}) == {1: ["liver"], 2: ["kidney", "Kidney*"]}
    for bad, message in [
        ({0: "x"}, "≥ 1"),
        ({1: []}, "give a name or a list"),
        ({1: ["LIVER*", "liver"]}, "first entry names the label"),
        ({"one": "x"}, "not an integer"),
        ([], "non-empty mapping"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_label_names(bad)


def test_pipeline_labels_accept_synonyms_and_keep_names_elsewhere(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text('input: {labels: {1: [liver, Liver, "LIVER*"], 2: kidney}}\n')
    p = Pipeline.from_yaml(path)
    assert p.labels == {1: "liver", 2: "kidney"} and p.spec.input.labels == {1: "liver", 2: "kidney"}
    assert p.label_synonyms == {1: ["liver", "Liver", "LIVER*"], 2: ["kidney"]}
    again = Pipeline.from_dict(p.to_dict())  # round trip keeps the lists
    assert again == p and again.label_synonyms == p.label_synonyms
    assert Pipeline().label_synonyms == {1: ["foreground"]}
    path.write_text('input: {labels: {1: ["LIVER*"]}}\n')
    with pytest.raises(ConfigError, match=r"p\.yaml: input\.labels: .*first entry names the label"):
        Pipeline.from_yaml(path)
    path.write_text("input: {labels: {1: liver}, label_synonyms: {1: [Liver]}}\n")
    with pytest.raises(ConfigError, match="unknown key 'label_synonyms'"):
        Pipeline.from_yaml(path)
