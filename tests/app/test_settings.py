"""Settings.from_mapping: a dict of field names (a Django project's CHANNELAPP) as Settings."""

from __future__ import annotations

from typing import Any

import pytest
from channelapp.settings import Settings


def test_none_and_an_empty_dict_are_the_defaults() -> None:
    assert Settings.from_mapping(None) == Settings()
    assert Settings.from_mapping({}) == Settings()


def test_values_are_taken_and_normalised() -> None:
    got = Settings.from_mapping(
        {"redis_urls": ("redis://a:6379/0",), "message_expiry": 5, "session_cookie_secure": True}
    )
    assert got.redis_urls == ["redis://a:6379/0"]
    assert got.message_expiry == 5.0 and isinstance(got.message_expiry, float)
    assert got.session_cookie_secure is True


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ([("redis_urls", [])], r"^CONF must be a dict of channelapp settings, got a list$"),
        ({"redis_url": "x"}, r"^CONF\['redis_url'\] is not a channelapp setting"),
        ({"redis_urls": "redis://a"}, r"^CONF\['redis_urls'\] must be a list of strings"),
        ({"session_cookie_secure": 1}, r"^CONF\['session_cookie_secure'\] must be True or False"),
        ({"channel_capacity": True}, r"^CONF\['channel_capacity'\] must be an integer"),
        ({"message_expiry": "5"}, r"^CONF\['message_expiry'\] must be a number"),
        ({"key_prefix": 3}, r"^CONF\['key_prefix'\] must be a string"),
    ],
)
def test_a_wrong_key_or_type_is_a_value_error_naming_it(conf: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_mapping(conf, "CONF")
