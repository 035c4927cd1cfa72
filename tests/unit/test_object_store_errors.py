"""How the S3 lake reads the store's answers: which are worth retrying, and which 412 means 'exists'
(some stores leave out the Condition element, and s3fs then raises a plain OSError)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from s3fs.errors import translate_boto_error

from lake.object_lake import _precondition_failed, _transient


def answer(code: str, status: int, condition: bool = False) -> BaseException:
    error = {"Code": code, "Message": code, **({"Condition": "If-None-Match"} if condition else {})}
    return translate_boto_error(ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},
                                            "PutObject"))


@pytest.mark.parametrize(("code", "status", "condition", "exists", "transient"), [
    ("PreconditionFailed", 412, True, True, False),
    ("PreconditionFailed", 412, False, True, False),
    ("SlowDown", 503, False, False, True),
    ("InternalError", 500, False, False, True),
    ("RequestTimeout", 408, False, False, True),
    ("ConditionalRequestConflict", 409, False, False, True),
    ("AccessDenied", 403, False, False, False),
    ("NotImplemented", 501, False, False, False),  # a store without conditional writes: fail at once
    ("InvalidRequest", 400, False, False, False),
    ("NoSuchBucket", 404, False, False, False),
])
def test_store_answer_is_classified_by_its_status(code: str, status: int, condition: bool, exists: bool,
                                                  transient: bool) -> None:
    error = answer(code, status, condition)

    assert (_precondition_failed(error), _transient(error)) == (exists, transient)


def test_unreachable_endpoint_is_transient() -> None:
    assert _transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
