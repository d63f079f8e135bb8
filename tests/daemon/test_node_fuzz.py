"""Generated bad bodies against every POST route of one real node: never a 500, always a
one-line reason, and the node still answers /probe afterwards."""

from __future__ import annotations

import json
from typing import Dict, List

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROUTE_GROUPS: Dict[str, List[str]] = {
    "files": ["/store", "/storeFile", "/linkFile", "/loadFile", "/downloadFileData"],
    "mutables": ["/mutable/get", "/mutable/set", "/mutable/delete"],
    "feeds": [
        "/feed/createFeed",
        "/feed/deleteFeed",
        "/feed/getFeedId",
        "/feed/getFeedInfo",
        "/feed/appendMessages",
        "/feed/getNumLocalMessages",
        "/feed/watchForNewMessages",
    ],
    "channels": ["/channel/upload"],
}
FRAMED = {"/loadFile", "/channel/upload"}
"""Routes that answer 200 and report a failure in an error frame."""

FIELDS = [
    "key",
    "value",
    "update",
    "localFilePath",
    "size",
    "mtime",
    "fileKey",
    "startByte",
    "endByte",
    "channelName",
    "channelTimeout",
    "feedId",
    "feedName",
    "subfeedHash",
    "messages",
    "subfeedWatches",
    "waitMsec",
    "maxNumMessages",
    "signed",
    "position",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
huge_numbers = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**40, -1, 1e308, -0.0])
bad_hashes = st.sampled_from(
    ["", "xyz", "G" * 40, "1" * 39, "1" * 41, "../" * 14, "\u0000" * 40, "a" * 64 + "/x"]
)
paths = st.sampled_from(["/", "/etc", "relative", "/no/such", "/tmp/\u0000", "/" + "x" * 5000])
file_keys = st.dictionaries(
    st.sampled_from(["sha1", "manifestSha1", "chunkOf"]),
    bad_hashes | huge_numbers | json_values,
    max_size=3,
)
field_values = json_values | huge_numbers | bad_hashes | paths | file_keys
documents = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6)
bodies = st.one_of(
    documents.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),  # bad UTF-8, not JSON at all
    st.integers(1, 60_000).map(lambda n: b"[" * n + b"]" * n),  # nested too deep
    st.sampled_from(
        [
            b'{"key": "k", "value": NaN}',
            b'{"key": Infinity, "value": 1}',
            b'{"key": "k", "value": 1e400}',
            b'\xff\xfe{"key": 1}',
            b'{"localFilePath": "\\ud800"}',
            b'{"feedName": "\\udfff"}',
        ]
    ),
)


def test_generated_bad_bodies_get_one_line_4xx(node) -> None:
    session = requests.Session()
    headers = dict(node.headers(), **{"Content-Type": "application/json"})

    def check(route: str, body: bytes) -> None:
        response = session.post(node.url + route, data=body, headers=headers, timeout=60)
        status = response.status_code
        assert status < 500, (route, body[:200], status, response.text[:300])
        if route in FRAMED and status == 200:
            assert b"internal error" not in response.content, (route, body[:200])
            return
        if status >= 400:
            text = response.text
            assert len(text.strip().splitlines()) == 1, (route, body[:200], text[:300])
            assert "Traceback" not in text and "internal error" not in text

    for group, routes in ROUTE_GROUPS.items():

        @settings(
            max_examples=100,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(route=st.sampled_from(routes), body=bodies)
        def fuzz(route: str, body: bytes) -> None:
            check(route, body)

        fuzz()
        assert requests.get(node.url + "/probe", timeout=5).ok, group
    session.close()
