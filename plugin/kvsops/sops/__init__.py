"""The SOPS format core: pure functions from bytes to trees and back. No I/O, env or processes."""
