"""The Hugging Face token of an Azure ML job: read from a Key Vault in the job, never written down.

The submission names only the secret (`hw.azureml.hf_token_secret`) and, optionally, the vault
(`hw.azureml.key_vault`; by default the workspace's own). In the job, `prepare` signs in with the
compute's managed identity, reads the secret and sets HF_TOKEN in its own process: the token is
in no job spec, log or file. Without a secret name nothing is read and no token is sent.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from slmtune.errors import HardwareError

SECRET_VAR = "SLMTUNE_HF_TOKEN_SECRET"
VAULT_VAR = "SLMTUNE_KEY_VAULT"
# What Azure ML sets in every job: the workspace the job runs in.
WORKSPACE_VARS = ("AZUREML_ARM_SUBSCRIPTION", "AZUREML_ARM_RESOURCEGROUP", "AZUREML_ARM_WORKSPACE_NAME")


def job_variables(secret: str | None, vault: str | None) -> dict[str, str]:
    """The job's environment variables that name the secret and its vault (names, never values)."""
    if not secret:
        return {}
    return {SECRET_VAR: secret, **({VAULT_VAR: vault} if vault else {})}


def vault_url(vault: str) -> str:
    """A vault name as its URL (a URL, e.g. of a sovereign cloud, unchanged)."""
    return vault if vault.startswith("https://") else f"https://{vault}.vault.azure.net/"


def workspace_vault(credential, environ: MutableMapping[str, str]) -> str:
    """The Key Vault of the workspace this job runs in (its ARM id's last part)."""
    from azure.ai.ml import MLClient

    missing = [name for name in WORKSPACE_VARS if not environ.get(name)]
    if missing:
        raise HardwareError(
            f"{SECRET_VAR} is set but {', '.join(missing)} are not (not in an Azure ML job?); "
            "name the vault with hw.azureml.key_vault"
        )
    subscription, group, workspace = (environ[name] for name in WORKSPACE_VARS)
    client = MLClient(credential, subscription, group, workspace, enable_telemetry=False)
    return str(client.workspaces.get(workspace).key_vault).rstrip("/").split("/")[-1]


def export_hf_token(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set HF_TOKEN from the named Key Vault secret; False when no secret is named."""
    environ = os.environ if environ is None else environ
    secret = environ.get(SECRET_VAR)
    if not secret:
        return False
    vault = environ.get(VAULT_VAR) or "the workspace's Key Vault"
    try:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        if "AZURE_CLIENT_ID" not in environ and environ.get("DEFAULT_IDENTITY_CLIENT_ID"):
            environ["AZURE_CLIENT_ID"] = environ["DEFAULT_IDENTITY_CLIENT_ID"]  # the compute's user-assigned identity
        credential = DefaultAzureCredential()
        vault = environ.get(VAULT_VAR) or workspace_vault(credential, environ)
        value = SecretClient(vault_url(vault), credential).get_secret(secret).value
    except HardwareError:
        raise
    except Exception as err:  # ImportError, sign-in, not found, forbidden, network
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise HardwareError(
            f"cannot read secret '{secret}' from {vault} ({first}); give the compute's identity the "
            "'Key Vault Secrets User' role on the vault, or leave hw.azureml.hf_token_secret unset"
        ) from None
    if not value:
        raise HardwareError(f"secret '{secret}' in {vault} is empty")
    environ["HF_TOKEN"] = value
    print(f"[slmtune] HF_TOKEN read from secret '{secret}' in {vault}", flush=True)
    return True
