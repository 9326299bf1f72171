"""A stateful fake of Azure Resource Manager and Microsoft Entra ID tokens, served as WSGI apps
for `management.azure.com` and `login.microsoftonline.com` behind the TLS edge, so that Packer's
`azure-arm` builder and the Azure SDKs run unmodified against it; VMs are machines of a
Hypervisor. `RecordingSshServer` (sshd.py) stands in for the machines' SSH when none boot."""

from .errors import ArmError
from .fake import LOGIN_HOST, MANAGEMENT_HOST, Arm
from .state import Settings, Subscription
from .tokens import Principal

__all__ = ["LOGIN_HOST", "MANAGEMENT_HOST", "Arm", "ArmError", "Principal", "Settings", "Subscription"]
