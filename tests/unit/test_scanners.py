"""The hand-written scanners that keep ``re`` off the decrypt and Helm downloader paths, each checked
against the regex it replaced: on generated strings built from the pattern's own pieces (so most of
them come close to matching), on arbitrary text, and on hostile cases (Unicode digits and spaces,
a final newline, which ``$`` accepts, repeated separators, truncations)."""

import base64
import binascii
import re

import pytest
from hypothesis import example, given, settings, strategies as st

from kvsops import _b64
from kvsops.hosts.argocd import settings as argocd_settings
from kvsops.hosts.helm import urls as helmurl
from kvsops.sops import metadata, timestamps, values
from kvsops.sops.stores import yaml_emit, yaml_resolve

# Pieces the patterns are made of, plus characters that must be refused: Unicode digits (Arabic-Indic,
# fullwidth, superscript: \d takes the first two, not the last), Unicode spaces, newlines, ASCII
# neighbours of the classes.
_HOSTILE = ["\u0663", "\uff15", "\u00b2", "\u3000", "\u2028", "\x85", "\n", "\r", "\t", " ", "\x00", "\udcff"]


def _pieces(*words: str) -> st.SearchStrategy[str]:
    atoms = st.sampled_from(list(words) + _HOSTILE + list("0123456789") + ["12", "2024", "00", "9" * 5])
    return st.lists(st.one_of(atoms, st.text(max_size=3)), max_size=14).map("".join)


SETTINGS = settings(max_examples=800, deadline=None)

# ------------------------------------------------------------------------------------- ENC values

_ENC_RE = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]", re.DOTALL)
_ENC_PIECES = _pieces(",iv:", ",tag:", ",type:", "]", "[", ",", ":", "iv", "tag", "type", "str", "QUJD", "==")


def _enc_regex(text):
    m = _ENC_RE.match(text)
    return m.groups() if m else None


@SETTINGS
@given(_ENC_PIECES)
@example("]],type:],type:]]")
@example(",iv:,tag:,type:]")
@example("a,iv:b,tag:c,type:d]")
@example("a,iv:,iv:b,tag:,tag:c,type:,type:d]]x")
@example("a,iv:b,tag:c,type:]")
@example("a,iv:b,tag:c,type:d")
@example("\n,iv:\n,tag:\n,type:\n]\n")
@example("a,iv:b,tag:c,tag:,type:d]")  # each group non-empty: the greedy choice backs off one step
@example("a,iv:b,iv:,tag:c,type:d]")
@example("a,iv:b,tag:c,type:d,type:]")
@example(",iv:a,iv:b,tag:c,type:d]")
@example("a,iv:b,tag:c,type:d]]")
def test_enc_split_matches_regex(tail):
    for text in ("ENC[AES256_GCM,data:" + tail, "ENC[AES256_GCM,data:" + tail + "]", tail):
        assert values._split_enc(text) == _enc_regex(text), text


@pytest.mark.parametrize("text", [
    "", "ENC[", "ENC[AES256_GCM,data:", "ENC[AES256_GCM,data:]", "ENC[AES256_GCM,data:a,iv:b,tag:c,type:]",
    "ENC[AES256_GCM,data:,iv:b,tag:c,type:d]", "enc[AES256_GCM,data:a,iv:b,tag:c,type:d]",
    "ENC[AES256_GCM,data:a,iv:b,tag:c,type:d]", "ENC[AES256_GCM,data:a,iv:b,tag:c,type:d]trailing",
    "ENC[AES256_GCM,data:a,iv:b,tag:c,type:d],iv:e,tag:f,type:g]",
    "x" * 20 + ",iv:,tag:,type:]",  # bounds near the prefix: never a negative (from-the-end) index
])
def test_enc_split_fixed_cases(text):
    assert values._split_enc(text) == _enc_regex(text)


_INT_RE = re.compile(r"^[+-]?[0-9]+$")


@SETTINGS
@given(_pieces("+", "-", "+-", "0"))
@example("12\n")
@example("12\n\n")
@example("\u0663")
@example("+")
@example("")
def test_go_int_matches_regex(text):
    assert values._is_go_int(text) == bool(_INT_RE.match(text))


@SETTINGS
@given(st.one_of(st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                 _pieces("=", "==", "===", "A", "AB", "ABC", "ABCD", "+", "/", "-", "_", "Zg")))
@example("Zg=")
@example("=Zg==")
@example("Zg==Zg==")
@example("Zm9v\n")
@example("Zm9v\u0663")
def test_b64decode_strict_matches_stdlib(text):
    def outcome(f):
        try:
            return f(text)
        except (binascii.Error, ValueError) as exc:
            return type(exc)

    assert outcome(_b64.b64decode_strict) == outcome(lambda s: base64.b64decode(s, validate=True))


@given(st.binary(max_size=200))
def test_b64encode_matches_stdlib(data):
    assert _b64.b64encode(data) == base64.b64encode(data)


# ------------------------------------------------------------------------------------- metadata

@SETTINGS
@given(_pieces("v", "0", "1", "3.11.0", ".", "-", "+", "rc.1", "01", "a", "A"))
@example("3.11.0")
@example("v3.11.0-rc.1+build.5")
@example("3.11.0\n")
@example("3.11.0-")
@example("3.11.0+")
@example("3.11.0+a+b")
@example("01.2.3")
@example("1.\u0662.3")
@example("1\u0662.2.3")
@example("vv1.2.3")
@example("1.2.3-a-b.c")
def test_semver_matches_regex(text):
    assert metadata._is_semver(text) == bool(re.match(metadata._SEMVER_RE, text))


@SETTINGS
@given(_pieces("+", "-", " ", "0"))
@example("")
@example("+")
@example("\u0663\u0664")
def test_int_text_matches_regex(text):
    assert metadata._is_int_text(text) == bool(re.fullmatch(r"[+-]?\d+", text or "x"))


# ------------------------------------------------------------------------------------- YAML scalars


@SETTINGS
@given(_pieces(".", "e", "E", "+", "-", "_", "0x", "inf", "nan"))
@example(".5")
@example("1.")
@example("1e")
@example("1e+")
@example("-.5e-3")
@example("1.5\n")
@example("+")
@example(".")
@example("\u0663.5")
def test_yaml_float_matches_regex(text):
    assert yaml_resolve._is_yaml_float(text) == bool(re.match(yaml_resolve._YAML_FLOAT_RE, text))
    assert yaml_resolve._is_yaml_float(text, dot_only=True) == bool(re.match(yaml_resolve._DOT_FLOAT_RE, text))


@SETTINGS
@given(_pieces("0", "7", "8", "9", "a", "f", "F", "g", "01"))
@example("0\n")
@example("")
@example("\u0663")
def test_digit_sets_match_regexes(text):
    for chars, pattern in ((yaml_resolve._DIGITS, r"^[0-9]+$"), (yaml_resolve._OCTAL, r"^[0-7]+$"),
                           (yaml_resolve._GO_INT["0x"][1], r"^[0-9a-fA-F]+$"),
                           (yaml_resolve._GO_INT["0b"][1], r"^[01]+$")):
        assert yaml_resolve._all_of(chars, text) == bool(re.match(pattern, text)), pattern


# ------------------------------------------------------------------------------------- timestamps
# One scanner (kvsops.sops.timestamps) reads three grammars; each dialect is checked against its regex.


def _go_time_groups(stamp):
    (y, m, d), clock, frac, zone = stamp
    return (y, m, d, None, None, None, None, None) if clock is None else (y, m, d, *clock[1:], frac, zone)


def _rfc3339_groups(stamp):
    (y, m, d), clock, frac, zone = stamp
    return (y, m, d, *clock[1:], None if frac is None else "." + frac, zone)


def _yaml_groups(stamp):
    (y, m, d), clock, frac, zone = stamp
    groups = [y, m, d] + [None] * 11
    if clock is not None:  # the pattern's two branches: T/t with a zone, or a space without one
        base = 3 if clock[0] in "Tt" else 9
        groups[base : base + 4] = clock
        groups[base + 4] = None if frac is None else "." + frac
        if base == 3:
            groups[8] = zone
    return tuple(groups)


_DIALECTS = [
    pytest.param(timestamps.YAML, _yaml_groups, id="yaml"),
    pytest.param(timestamps.GO_TIME, _go_time_groups, id="gotime"),
    pytest.param(timestamps.RFC3339, _rfc3339_groups, id="rfc3339"),
]
_TS_PIECES = _pieces("2024-1-2", "2024-01-02", "T", "t", " ", "Z", "z", ":", "-", "+", ".", "1:2:3", "12:30:45",
                     "+05:30", "+05", "+0530", "-00:00", "123", "v")


@pytest.mark.parametrize(("dialect", "groups"), _DIALECTS)
@SETTINGS
@given(_TS_PIECES)
@example("2024-1-2")
@example("2024-01-02")
@example("2024-01-02 1:2:3.5")
@example("2024-01-02T1:2:3Z")
@example("2024-01-02T1:2:3")
@example("2024-01-02T1:2:3+05:30")
@example("2024-001-02")
@example("2024-01-02 ")
@example("2024-01-02\n")
@example("2024-01-02T01:02:03.Z")
@example("\u0662\u0660\u0662\u0664-\u0661-2")
@example("\u0662\u0660\u0662\u0664-01-02T03:04:05Z")
@example("2024-01-02T03:04:05Z")
@example("2024-01-02T03:04:05Z\n")
@example("2024-01-02t03:04:05.123456789+05:30")
@example("2024-01-02T03:04:05+0530")
@example("2024-01-02T03:04:05")
@example("2024-01-02 03:04:05.5 Z")
@example("2024-01-02T03:04:05\u3000+05")
@example("2024-01-02T03:04:05 +0530")
@example("2024-01-02T03:04:05+05:3")
@example("2024-01-02T03:04:05.")
@example("2024-01-02T03:04:05 ")
@example("2024-01-02T03:04:05\n")
@example("2024-01-02T03:04:05\nZ")
@example("2024-01-02T03:04:05 \n")
def test_timestamp_scanner_matches_each_dialects_regex(dialect, groups, text):
    m = re.match(dialect.pattern, text)
    stamp = timestamps.scan(text, dialect)
    assert (None if stamp is None else groups(stamp)) == (m.groups() if m else None)


@SETTINGS
@given(_pieces("ENC[", "]", "(", ")", ":", "@", "=", "/", ",", ".", "_", "-", "+", "a", "Z", "!", "#", "'", '"'))
@example("")
@example("abc\n")
@example("(x")
@example("-x")
@example("ENC[AES256_GCM,data:QUJD,iv:QUJD,tag:QUJD,type:str]")
def test_safe_plain_matches_regex(text):
    assert yaml_emit._is_safe_plain(text) == bool(re.match(yaml_emit._SAFE_PLAIN_RE, text))


# ------------------------------------------------------------------------------------- helm URLs


@SETTINGS
@given(_pieces("://", ":", "/", "a", "Z", "+", ".", "-", "s3", "https", "ref+", "secretref+", "secret"))
@example("https://x")
@example("a+b.c-d://")
@example("1a://")
@example("a:/")
@example("\u0663://")
@example("C:\\x")
def test_helm_url_checks_match_regexes(text):
    assert helmurl._has_url_scheme(text) == bool(re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text))
    assert text.startswith(("ref+", "secretref+")) == bool(re.match(r"(secret)?ref\+", text))
    assert helmurl.is_absolute(text) == (text.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", text)))
    assert text.replace("\\", "/").split("/") == re.split(r"[/\\]", text)


# ------------------------------------------------------------------------------------- Argo CD settings

_ARGOCD_PATTERNS = {
    "is_dns1123_label": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    "is_release_name": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "is_kube_version": r"^v?\d{1,3}\.\d{1,3}(\.\d{1,5})?([-+][0-9A-Za-z.-]{1,64})?$",
    "is_api_version": r"^[A-Za-z0-9.-]{1,253}(/[A-Za-z0-9.-]{1,63}){0,2}$",
}
_ARGOCD_PIECES = st.one_of(
    _pieces("v", ".", "-", "+", "/", "a", "z", "A", "Z", "_", "1.31.2", "v1.30.0-rc.1+k3s", "apps/v1", "web-1",
            "x" * 61, "y" * 62, "7" * 4, "8" * 6),
    st.integers(0, 300).map(lambda n: "a" * n),  # the length bounds
    st.integers(0, 300).map(lambda n: "v1.2.3-" + "b" * n),
    st.integers(0, 80).map(lambda n: "g/v/" + "c" * n),
)


@SETTINGS
@given(_ARGOCD_PIECES)
@example("1.31.2")
@example("v1.31.2\n")
@example("1.31.2\n\n")
@example("\u0661.\u0663")  # Arabic-Indic digits: \d takes them
@example("\uff11.\uff12")  # fullwidth digits: so does \d
@example("\u00b9.\u00b2")  # superscripts: \d does not
@example("1.2.")
@example("1.2.3.4")
@example("1.2-")
@example("1.2+a+b")
@example("1234.1")
@example("1.2.123456")
@example("1.2.3-" + "b" * 64)
@example("1.2.3-" + "b" * 65)
@example("a" * 63)
@example("a" * 64)
@example("a-" * 31 + "a")
@example("-a")
@example("a-")
@example("a..b")
@example(".a")
@example("a.b.")
@example("apps/v1/x/y")
@example("a" * 253 + "/" + "b" * 63)
@example("a" * 254)
@example("a/" + "b" * 64)
@example("/v1")
@example("apps//v1")
@example("v1\n")
@example("")
def test_argocd_setting_scanners_match_regexes(text):
    for name, pattern in _ARGOCD_PATTERNS.items():
        assert getattr(argocd_settings, name)(text) == bool(re.match(pattern, text)), (name, text)


@SETTINGS
@given(_pieces("a", "z", "-", "--", "_", "/", ".", "A", "\u00e9", "ß", "9"))
@example("my_app")
@example("a-!b")
@example("!!a--b??")
@example("-")
@example("")
def test_release_dashes_match_regex(text):
    assert argocd_settings.dashes(text) == re.sub(r"[^a-z0-9-]+", "-", text)


@SETTINGS
@given(_pieces(",", "\n", " ", "a", "b", ",\n", "\r\n"))
def test_plugin_env_list_split_matches_regex(text):
    assert text.replace("\n", ",").split(",") == re.split(r"[,\n]", text)
