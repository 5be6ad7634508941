"""The Datadog Forwarder's settings a switching user may depend on, end to end: DD_FORWARD_LOG=false,
a KMS-encrypted DD_KMS_API_KEY, and a secret or SSM parameter in another region than the function's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from bench.fixtures import cloudtrail_documents, records_of, s3_event
from forwarder import apikey, handler
from forwarder.devintake import LocalIntake
from forwarder.errors import ConfigError
from forwarder.metrics import Outcome, Tally

from .helpers import API_KEY, context, put, settings_for

DOCUMENT = cloudtrail_documents()["aws.persistence.iam-create-admin-user"]
OTHER_REGION = "eu-west-1"


def _object(s3: Any, name: str) -> dict[str, Any]:
    key = f"AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/{name}.json.gz"
    put(s3, "dd-settings-bucket", key, DOCUMENT)
    return s3_event("dd-settings-bucket", key)


@pytest.fixture
def fresh_kms_cache() -> Iterator[None]:
    apikey.from_kms.cache_clear()
    yield
    apikey.from_kms.cache_clear()


def test_forward_log_false_reads_and_counts_every_event_but_sends_none(s3: Any, intake: LocalIntake) -> None:
    tally = Tally()
    handler.handle(_object(s3, "no-forward"), context(), settings_for(intake.url, DD_FORWARD_LOG="false"), tally)

    assert intake.entries == []
    assert tally.events_read == len(records_of(DOCUMENT))
    assert tally.total(Outcome.FILTERED) == tally.events_read
    assert tally.balanced()


@pytest.mark.parametrize("with_context", [True, False], ids=["lambda-console-context", "no-context"])
def test_api_key_from_kms_ciphertext(s3: Any, intake: LocalIntake, fresh_kms_cache: None, with_context: bool) -> None:
    kms = boto3.client("kms")
    key_id = kms.create_key(Description="forwarder test key")["KeyMetadata"]["KeyId"]
    extra = {"EncryptionContext": {"LambdaFunctionName": "forwarder-test"}} if with_context else {}
    blob = kms.encrypt(KeyId=key_id, Plaintext=API_KEY.encode(), **extra)["CiphertextBlob"]
    settings = settings_for(intake.url, DD_API_KEY="", DD_KMS_API_KEY=base64.b64encode(blob).decode())

    handler.handle(_object(s3, f"kms-{with_context}"), context(), settings)

    assert len(intake.entries) == len(records_of(DOCUMENT))


def test_a_kms_ciphertext_kms_refuses_names_the_variable_not_the_value(
    moto_endpoint: str, fresh_kms_cache: None
) -> None:
    ciphertext = base64.b64encode(b"not a ciphertext KMS ever made").decode()
    settings = settings_for("http://127.0.0.1:1", DD_API_KEY="", DD_KMS_API_KEY=ciphertext)

    with pytest.raises(ConfigError, match="DD_KMS_API_KEY") as raised:
        settings.resolve_api_key()

    assert ciphertext not in str(raised.value)


def test_api_key_secret_in_another_region(s3: Any, intake: LocalIntake) -> None:
    secrets = boto3.client("secretsmanager", region_name=OTHER_REGION)
    arn = secrets.create_secret(Name="forwarder/eu-key", SecretString=API_KEY)["ARN"]
    assert f":{OTHER_REGION}:" in arn
    with pytest.raises(Exception, match="ResourceNotFound"):  # not in the function's own region
        boto3.client("secretsmanager").get_secret_value(SecretId=arn)
    settings = settings_for(intake.url, DD_API_KEY="", DD_API_KEY_SECRET_ARN=arn)

    handler.handle(_object(s3, "secret-eu"), context(), settings)

    assert len(intake.entries) == len(records_of(DOCUMENT))


def test_api_key_ssm_parameter_arn_in_another_region(s3: Any, intake: LocalIntake) -> None:
    boto3.client("ssm", region_name=OTHER_REGION).put_parameter(
        Name="/forwarder/eu-key", Value=API_KEY, Type="SecureString"
    )
    arn = f"arn:aws:ssm:{OTHER_REGION}:123456789012:parameter/forwarder/eu-key"
    settings = settings_for(intake.url, DD_API_KEY="", DD_API_KEY_SSM_NAME=arn)

    handler.handle(_object(s3, "ssm-eu"), context(), settings)

    assert len(intake.entries) == len(records_of(DOCUMENT))
