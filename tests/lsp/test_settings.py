"""Settings from the client, checked without pydantic (it cost ~0.2 s of every editor start)."""

from __future__ import annotations

from rewind_lsp.lsp.config import Settings, parse_settings


def test_good_settings_in_camel_and_snake_case() -> None:
    settings, problem = parse_settings({"rewind-lsp": {"watchRoots": ["/a"], "disabled_rules": ["malformed-line"],
                                                       "severity": {"orphan-tool-use": "hint"}, "notifications": False,
                                                       "unknownThing": 1, "logGlobs": None}})
    assert problem is None
    assert settings == Settings(watch_roots=["/a"], disabled_rules=["malformed-line"],
                                severity={"orphan-tool-use": "hint"}, notifications=False)
    assert settings.log_globs == ["*.log"]


def test_bad_settings_are_named_and_the_rest_is_kept() -> None:
    settings, problem = parse_settings({"severity": {"orphan-tool-use": "loud"}, "logGlobs": "*.log",
                                        "ruleDirs": [3], "notifications": "yes", "watchRoots": ["/x"]})
    assert problem == (
        "rewind-lsp: bad settings (severity: Value error, severity of 'orphan-tool-use': 'loud' is not error, "
        "warning, information or hint; logGlobs: Input should be a valid list; ruleDirs: Input should be a valid "
        "string (every item); notifications: Input should be a valid boolean); using the defaults for logGlobs, "
        "notifications, ruleDirs, severity"
    )
    assert settings == Settings(watch_roots=["/x"])


def test_settings_that_are_no_object() -> None:
    assert parse_settings(3) == (Settings(), "rewind-lsp settings must be an object, got int; using the defaults")
    assert parse_settings(None) == (Settings(), None)
