"""Fetching the API key: Secrets Manager, SSM or KMS, each in the region its reference names.

Powertools Parameters caches the stored key for API_KEY_CACHE_SECONDS, so a rotated key is picked
up without a cold start; a KMS ciphertext never changes, so its plain text is kept for the
container's life. Errors name the variable and the reference (an ARN or a name), never a value.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Any

import orjson

from forwarder.errors import ConfigError

API_KEY_CACHE_SECONDS = 300


def region_of(reference: str) -> str | None:
    """The region an ARN names (`arn:aws:secretsmanager:eu-west-1:...`); None for a plain name,
    which is looked up in the function's own region."""
    parts = reference.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and parts[3]:
        return parts[3]
    return None


@functools.cache
def _provider(service: str, region: str | None) -> Any:
    """One Powertools provider (and so one cache) per service and region, kept per container."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    client = boto3.client(service, region_name=region)
    if service == "secretsmanager":
        return parameters.SecretsProvider(boto3_client=client)
    return parameters.SSMProvider(boto3_client=client)


def from_secret(arn: str) -> str:
    """DD_API_KEY_SECRET_ARN: the secret's string, or the `DD_API_KEY` field of a JSON secret."""
    try:
        value = _provider("secretsmanager", region_of(arn)).get(arn, max_age=API_KEY_CACHE_SECONDS)
    except Exception as exc:  # Powertools wraps every boto3 failure; keep the cause, not the value
        raise ConfigError(f"DD_API_KEY_SECRET_ARN: could not read secret {arn}: {type(exc).__name__}") from exc
    text = value.decode() if isinstance(value, bytes) else str(value)
    if text.lstrip().startswith("{"):
        try:
            text = str(orjson.loads(text).get("DD_API_KEY", ""))
        except (orjson.JSONDecodeError, AttributeError):
            raise ConfigError(f"DD_API_KEY_SECRET_ARN: secret {arn} is neither a key nor JSON") from None
    return _non_empty(text, "DD_API_KEY_SECRET_ARN")


def from_ssm(name: str) -> str:
    """DD_API_KEY_SSM_NAME: a parameter name (this region) or ARN (its own region), decrypted."""
    try:
        value = _provider("ssm", region_of(name)).get(name, decrypt=True, max_age=API_KEY_CACHE_SECONDS)
    except Exception as exc:
        raise ConfigError(f"DD_API_KEY_SSM_NAME: could not read parameter {name}: {type(exc).__name__}") from exc
    return _non_empty(str(value), "DD_API_KEY_SSM_NAME")


@functools.cache
def from_kms(ciphertext: str, function_name: str) -> str:
    """DD_KMS_API_KEY: base64 KMS ciphertext, decrypted once per container.

    As the Datadog Forwarder does, it is tried first with the encryption context the Lambda
    console's encryption helpers add (`LambdaFunctionName`: this function's name), then without
    one. A plain text that is not UTF-8 is used base64-encoded, as there.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from forwarder import runtime

    try:
        blob = base64.b64decode(ciphertext.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("DD_KMS_API_KEY is not base64 (the CiphertextBlob `aws kms encrypt` prints)") from None
    kms = runtime.client("kms")
    try:
        try:
            answer = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"LambdaFunctionName": function_name})
        except ClientError:
            answer = kms.decrypt(CiphertextBlob=blob)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        raise ConfigError(f"DD_KMS_API_KEY: KMS could not decrypt it: {code or type(exc).__name__}") from None
    plain: bytes = answer["Plaintext"]
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(plain).decode()
    return _non_empty(text, "DD_KMS_API_KEY")


def _non_empty(key: str, variable: str) -> str:
    key = key.strip()
    if not key:
        raise ConfigError(f"{variable}: the stored API key is empty")
    return key
