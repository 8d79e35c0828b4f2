"""kustomize's name-suffix hash, against values from the reference notes (verified there against
real kustomize output); tests/integration/test_krm.py checks it against kustomize's own
secretGenerator as well."""

from __future__ import annotations

import pytest

from kvsops.hosts.kustomize.hashing import encode, go_json, hash_input, hashed_name, name_hash


def test_ksops_hash_fixture_value() -> None:
    obj = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mysecret-hash"},
        "data": {"password": "MWYyZDFlMmU2N2Rm", "username": "YWRtaW4="},
        "stringData": {"application": "kustomize-sops"}, "type": "Opaque",
    }
    assert hash_input(obj) == (
        '{"data":{"password":"MWYyZDFlMmU2N2Rm","username":"YWRtaW4="},"kind":"Secret","name":"",'
        '"stringData":{"application":"kustomize-sops"},"type":"Opaque"}'
    )
    assert name_hash(obj) == "h55dbmfg7b"
    assert hashed_name(obj) == "mysecret-hash-h55dbmfg7b"


def test_throwaway_plugin_value() -> None:
    secret = {"kind": "Secret", "metadata": {"name": "gen"}, "data": {"a": "YQ=="}, "type": "Opaque"}
    assert name_hash(secret) == "hbc28hm2g8"


def test_name_and_namespace_never_enter_the_hash() -> None:
    a = {"kind": "Secret", "metadata": {"name": "a", "namespace": "x"}, "data": {"k": "dg=="}, "type": "Opaque"}
    b = {"kind": "Secret", "metadata": {"name": "b"}, "data": {"k": "dg=="}, "type": "Opaque"}
    assert name_hash(a) == name_hash(b)


def test_type_and_missing_fields() -> None:
    base = {"kind": "Secret", "data": {"k": "dg=="}}
    assert '"type":""' in hash_input(base)
    assert name_hash(base) != name_hash({**base, "type": "Opaque"})
    assert '"data":""' in hash_input({"kind": "Secret"})
    assert "stringData" not in hash_input(base)


def test_configmap_shape() -> None:
    assert hash_input({"kind": "ConfigMap", "data": {"a": "b"}}) == '{"data":{"a":"b"},"kind":"ConfigMap","name":""}'
    assert '"binaryData":{"x":"eA=="}' in hash_input({"kind": "ConfigMap", "binaryData": {"x": "eA=="}})


def test_go_json_escapes_like_encoding_json() -> None:
    assert go_json({"b": "<&>", "a": "\u2028é"}) == '{"a":"\\u2028é","b":"\\u003c\\u0026\\u003e"}'


def test_encode_substitution() -> None:
    assert encode("0123456789abcdef") == "gh2k456789"
    assert encode("ae13bcdf00ff") == "mthkbcdfgg"
    with pytest.raises(ValueError):
        encode("abc")
