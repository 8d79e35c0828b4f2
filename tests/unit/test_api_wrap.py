"""api.wrap_data_key: a recipient failing to wrap is reported as EncryptError, never an internal error."""

from __future__ import annotations

import pytest

from kvsops import api, errors
from kvsops.keys.base import KeyFailure


class _Unreachable:
    """Like an Azure recipient without a version: even ``id`` needs the (unreachable) network."""

    kind = "azure_kv"

    @property
    def id(self) -> str:
        raise KeyFailure("could not reach the vault")

    def wrap(self, data_key: bytes) -> dict[str, str]:
        raise KeyFailure("could not reach the vault")


def test_wrap_failure_whose_id_also_fails_is_an_encrypt_error() -> None:
    with pytest.raises(errors.EncryptError, match="could not wrap the data key for azure_kv: could not reach"):
        api.wrap_data_key(b"k" * 32, [[_Unreachable()]])
