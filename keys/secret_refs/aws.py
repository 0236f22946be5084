"""``aws-ssm:`` (Parameter Store) and ``aws-sm:`` (Secrets Manager) through boto3.

Credentials and region come from boto3's own chain (AWS_REGION, AWS_ACCESS_KEY_ID,
AWS_PROFILE, instance or task roles); ``INFERIA_AWS_ENDPOINT_URL`` overrides the
endpoint of both services. An ARN's region selects the client's region.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from django.conf import settings

from keys.secret_refs.base import Failure, SecretRefError, segments_clean

_PARTITION = r"aws(?:-cn|-us-gov|-iso|-iso-b)?"
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d"
_SSM_NAME = re.compile(r"/?[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*")
_SSM_ARN = re.compile(
    rf"arn:{_PARTITION}:ssm:(?P<region>{_REGION}):\d{{12}}:parameter/(?P<name>[A-Za-z0-9_.\-/]+)"
)
_SM_NAME = re.compile(r"[A-Za-z0-9_+=.@\-]+(?:/[A-Za-z0-9_+=.@\-]+)*")
_SM_ARN = re.compile(
    rf"arn:{_PARTITION}:secretsmanager:(?P<region>{_REGION}):\d{{12}}:secret:"
    r"(?P<name>[A-Za-z0-9_+=.@\-/]+)"
)
_JSON_KEY = re.compile(r"[A-Za-z0-9_.\-]+")

_NOT_FOUND = {
    "ParameterNotFound",
    "ParameterVersionNotFound",
    "ResourceNotFoundException",
    # Secrets Manager: the secret is scheduled for deletion.
    "InvalidRequestException",
}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "KMSAccessDeniedException",
    "DecryptionFailure",
}
_UNAVAILABLE = {
    "InternalServerError",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "ThrottlingException",
    "TooManyUpdates",
}


def _region_of(arn: str) -> str | None:
    for pattern in (_SSM_ARN, _SM_ARN):
        match = pattern.fullmatch(arn)
        if match:
            return match["region"]
    return None


@functools.lru_cache(maxsize=32)
def _client(service: str, region: str | None, endpoint_url: str, timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": 2, "mode": "standard"},
    )
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url or None, config=config
    )


def clear_clients() -> None:
    _client.cache_clear()


def _call(scheme: str, service: str, region: str | None, operation: str, **params: Any) -> Any:
    try:
        import botocore.exceptions as errors
    except ImportError as exc:
        raise SecretRefError(scheme, Failure.NOT_CONFIGURED, "boto3 is not installed") from exc
    try:
        client = _client(
            service,
            region,
            settings.INFERIA_AWS_ENDPOINT_URL,
            settings.INFERIA_SECRET_REF_TIMEOUT_SECONDS,
        )
        return getattr(client, operation)(**params)
    except errors.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            raise SecretRefError(scheme, Failure.NOT_FOUND) from None
        if code in _DENIED:
            raise SecretRefError(scheme, Failure.ACCESS_DENIED) from None
        if code in _UNAVAILABLE:
            raise SecretRefError(scheme, Failure.UNREACHABLE) from None
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status in (401, 403):
            raise SecretRefError(scheme, Failure.ACCESS_DENIED) from None
        if status == 404:
            raise SecretRefError(scheme, Failure.NOT_FOUND) from None
        if status == 429 or status >= 500:
            raise SecretRefError(scheme, Failure.UNREACHABLE) from None
        raise SecretRefError(scheme, Failure.REFUSED, f"HTTP {status}") from None
    except (errors.NoRegionError, errors.NoCredentialsError, errors.PartialCredentialsError):
        raise SecretRefError(
            scheme, Failure.NOT_CONFIGURED, "no AWS region or credentials"
        ) from None
    except (errors.EndpointConnectionError, errors.ConnectionError, errors.HTTPClientError):
        raise SecretRefError(scheme, Failure.UNREACHABLE) from None
    except errors.BotoCoreError:
        raise SecretRefError(scheme, Failure.REFUSED) from None


class SsmBackend:
    scheme = "aws-ssm"
    syntax = "aws-ssm:/parameter/name or aws-ssm:arn:aws:ssm:<region>:<account>:parameter/name"
    requires: tuple[str, ...] = ("boto3",)
    cached = True

    def canonical(self, name: str) -> str:
        if name.lower().startswith("arn:"):
            match = _SSM_ARN.fullmatch(name)
            if not match or not segments_clean(match["name"]):
                raise ValueError("Not a Parameter Store ARN.")
            return name
        if (
            len(name) > 2048
            or not _SSM_NAME.fullmatch(name)
            or not segments_clean(name.lstrip("/"))
        ):
            raise ValueError("A parameter name: letters, digits, _ . - and / between segments.")
        return name

    def resolve(self, name: str) -> str:
        answer = _call(
            self.scheme,
            "ssm",
            _region_of(name),
            "get_parameter",
            Name=name,
            WithDecryption=True,
        )
        value = answer.get("Parameter", {}).get("Value")
        if not isinstance(value, str) or not value:
            raise SecretRefError(self.scheme, Failure.INVALID_VALUE)
        return value


class SecretsManagerBackend:
    scheme = "aws-sm"
    syntax = "aws-sm:<secret name or ARN>[#json-key]"
    requires: tuple[str, ...] = ("boto3",)
    cached = True

    def canonical(self, name: str) -> str:
        secret_id, sep, key = name.partition("#")
        if sep and not _JSON_KEY.fullmatch(key):
            raise ValueError("A JSON key after #: letters, digits, _ . -")
        if secret_id.lower().startswith("arn:"):
            match = _SM_ARN.fullmatch(secret_id)
            if not match or not segments_clean(match["name"]):
                raise ValueError("Not a Secrets Manager ARN.")
        elif (
            len(secret_id) > 512
            or not _SM_NAME.fullmatch(secret_id)
            or not segments_clean(secret_id)
        ):
            raise ValueError("A secret name: letters, digits, / _ + = . @ -")
        return name

    def resolve(self, name: str) -> str:
        secret_id, sep, key = name.partition("#")
        answer = _call(
            self.scheme,
            "secretsmanager",
            _region_of(secret_id),
            "get_secret_value",
            SecretId=secret_id,
        )
        text = answer.get("SecretString")
        if text is None and isinstance(answer.get("SecretBinary"), bytes):
            try:
                text = answer["SecretBinary"].decode()
            except UnicodeDecodeError:
                text = None
        if not isinstance(text, str) or not text:
            raise SecretRefError(self.scheme, Failure.INVALID_VALUE)
        if not sep:
            return text
        try:
            document = json.loads(text)
        except ValueError:
            raise SecretRefError(self.scheme, Failure.INVALID_VALUE, "not JSON") from None
        value = document.get(key) if isinstance(document, dict) else None
        if not isinstance(value, str) or not value:
            raise SecretRefError(
                self.scheme, Failure.INVALID_VALUE, f"no string at #{key}"
            ) from None
        return value
