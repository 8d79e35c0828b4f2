"""One root error, a stable code per failure, one exit-code table.

Messages may name files, key paths (``db:password``), key types and public key ids. They must
never contain a plaintext, a data key, a private key, an environment value or a file's content.
Exit codes follow sops' ``cmd/sops/codes`` where a sops equivalent exists.
"""

from __future__ import annotations


class KvsopsError(Exception):
    """Root of every error kvsops raises on purpose."""

    code = "KVSOPS_ERROR"
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, where: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.where = where
        super().__init__(self.render())

    def render(self) -> str:
        if self.where:
            return f"{self.where}: {self.message}"
        return self.message

    def with_where(self, where: str) -> "KvsopsError":
        """Return the same error located at ``where`` (a file name), keeping code and hint."""
        if self.where:
            where = f"{where}: {self.where}"
        clone = self.__class__.__new__(self.__class__)
        KvsopsError.__init__(clone, self.message, hint=self.hint, where=where)
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k not in {"where", "args"}})
        clone.where = where
        clone.args = (clone.render(),)
        return clone



class UsageError(KvsopsError):
    """Bad command-line usage (exit 1, as sops: its flag errors and unusable key arguments are
    generic errors)."""

    code = "USAGE"
    exit_code = 1


class InputError(KvsopsError):
    """The input could not be read or parsed (sops: CouldNotReadInputFile). A file that does not
    parse as an *encrypted* file is a generic error in sops (exit 1): see ``api.load_encrypted``."""

    code = "INPUT"
    exit_code = 2


class FileMissing(InputError):
    """An input file does not exist (its code is INPUT; a caller may treat it as optional)."""


class OutputError(KvsopsError):
    """The output could not be written (sops: CouldNotWriteOutputFile)."""

    code = "OUTPUT"
    exit_code = 3


class EmitError(KvsopsError):
    """The tree could not be serialized (sops: ErrorDumpingTree)."""

    code = "EMIT"
    exit_code = 4


class ConfigError(KvsopsError):
    """`.sops.yaml` or another configuration is invalid or has no matching rule."""

    code = "CONFIG"
    exit_code = 1


class ConflictingParameters(KvsopsError):
    code = "CONFLICTING_PARAMETERS"
    exit_code = 8


class InvalidSetFormat(KvsopsError):
    code = "INVALID_SET_FORMAT"
    exit_code = 7


class FormatError(KvsopsError):
    """The file is not valid for its store, or its sops metadata is malformed."""

    code = "FORMAT"
    exit_code = 1


class MetadataNotFound(KvsopsError):
    """The file has no sops metadata: it is not encrypted."""

    code = "NOT_ENCRYPTED"
    exit_code = 1


class EncryptError(KvsopsError):
    code = "ENCRYPT"
    exit_code = 23


class KeyWrapFailed(EncryptError):
    """A recipient could not wrap the data key (sops: "Could not generate data key", a generic
    error; only a new file's edit reports it as CouldNotRetrieveKey, 128)."""

    exit_code = 1


class DecryptValueError(KvsopsError):
    """A value failed to decrypt: bad tag, AAD (moved key), format or type (sops: ErrorDecryptingTree)."""

    code = "DECRYPT_VALUE"
    exit_code = 25


class CannotChangeKeys(KvsopsError):
    """rotate --add-*/--rm-* on a file that does not exist (sops: CannotChangeKeysFromNonExistentFile)."""

    code = "CANNOT_CHANGE_KEYS"
    exit_code = 49


class MacMismatch(KvsopsError):
    """The MAC is missing, undecryptable, or differs from the contents (sops: MacMismatch)."""

    code = "MAC_MISMATCH"
    exit_code = 51


class InvalidTreePath(KvsopsError):
    code = "INVALID_TREE_PATH"
    exit_code = 91


class KeyNotFoundInTree(KvsopsError):
    code = "KEY_NOT_FOUND"
    exit_code = 1


class NeedAtLeastOneDocument(KvsopsError):
    code = "EMPTY_INPUT"
    exit_code = 92


class NoFileSpecified(KvsopsError):
    code = "NO_FILE"
    exit_code = 100


class DuplicateDecryptionKeyType(KvsopsError):
    code = "DUPLICATE_DECRYPTION_KEY_TYPE"
    exit_code = 112


class NoKeyAvailable(KvsopsError):
    """No master key (or not enough key groups) could recover the data key (sops: CouldNotRetrieveKey)."""

    code = "NO_KEY"
    exit_code = 128


class KeyServiceError(KvsopsError):
    """A key backend failed in a way that is not 'not my key' (network, permission, timeout)."""

    code = "KEY_SERVICE"
    exit_code = 128


class MissingDependency(KvsopsError):
    """An optional extra is needed (e.g. ``kvsops[azure]``)."""

    code = "MISSING_DEPENDENCY"
    exit_code = 1


class FileNotModified(KvsopsError):
    code = "NOT_MODIFIED"
    exit_code = 200


class NoEditorFound(KvsopsError):
    code = "NO_EDITOR"
    exit_code = 201


class VersionError(KvsopsError):
    code = "VERSION"
    exit_code = 202


class AlreadyEncrypted(KvsopsError):
    code = "ALREADY_ENCRYPTED"
    exit_code = 203


class PathRefused(KvsopsError):
    """A path escapes the allowed root (absolute, ``..``, or a symlink leaving it)."""

    code = "PATH_REFUSED"
    exit_code = 10


class PolicyRefused(KvsopsError):
    """A key policy (e.g. the Argo CD project policy) does not allow the file's keys."""

    code = "POLICY_REFUSED"
    exit_code = 11


class AgentError(KvsopsError):
    """The kvsops agent was required (``KVSOPS_AGENT=required``) but did not serve the request, or
    ``kvsops agent`` itself could not start, stop or reach an agent."""

    code = "AGENT"
    exit_code = 12


class PluginRefused(KvsopsError):
    """A kustomize plugin or function that does not run here (in the Argo CD sidecar, only
    kvsops' own generators do)."""

    code = "PLUGIN_REFUSED"
    exit_code = 13


class GeneratorError(KvsopsError):
    """A generator configuration (kustomize, Argo CD, Helm URL) is invalid."""

    code = "GENERATOR"
    exit_code = 1


class ReferenceFailed(KvsopsError):
    """A ``ref+...`` secret reference could not be resolved (the message names the reference,
    never the secret)."""

    code = "REFERENCE"
    exit_code = 1


class LimitExceeded(KvsopsError):
    """Input exceeds a documented safety limit (size, depth, aliases, recipients)."""

    code = "LIMIT"
    exit_code = 2


class Timeout(KvsopsError):
    code = "TIMEOUT"
    exit_code = 124


class Interrupted(KvsopsError):
    code = "INTERRUPTED"
    exit_code = 130


# Raised by key backends and the Key Vault plumbing, turned into KvsopsErrors by the session layer.


class NotMyKey(Exception):
    """This backend holds no key for the entry: try the next one. The message is public."""


class KeyFailure(Exception):
    """A real failure (permission, network, corrupt wrapped key). The message (and hint) are public."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

