# Rendered by the GoldenImage operator for platform/web-base-7, target azure-we.
# Build id web-base-7-1a2b3c4d. Do not edit: the ImageBuild's recipe is the source.

variable "attempt" {
  type    = string
  default = "1"
}

# Where the build's input files are.
variable "inputs_dir" {
  type = string
}

variable "manifest_path" {
  type = string
}

variable "azure_client_id" {
  type    = string
  default = env("ARM_CLIENT_ID")
}

variable "azure_client_secret" {
  type      = string
  default   = env("ARM_CLIENT_SECRET")
  sensitive = true
}

variable "azure_tenant_id" {
  type    = string
  default = env("ARM_TENANT_ID")
}

locals {
  resource_tags = {
    "role"                         = "web"
    "goldenimage.io_build-id"      = "web-base-7-1a2b3c4d"
    "goldenimage.io_image"         = "web-base"
    "goldenimage.io_namespace"     = "platform"
    "goldenimage.io_version"       = "7"
    "goldenimage.io_target"        = "azure-we"
    "app.kubernetes.io_managed-by" = "goldenimage-operator"
    "goldenimage.io_attempt"       = var.attempt
  }
}

source "azure-arm" "azure-we" {
  subscription_id                                  = "00000000-0000-0000-0000-000000000000"
  client_id                                        = var.azure_client_id
  client_secret                                    = var.azure_client_secret
  tenant_id                                        = var.azure_tenant_id
  location                                         = "westeurope"
  vm_size                                          = "Standard_D2s_v5"
  os_type                                          = "Linux"
  image_publisher                                  = "Debian"
  image_offer                                      = "debian-12"
  image_sku                                        = "12-gen2"
  image_version                                    = "latest"
  managed_image_name                               = "web-base-7-1a2b3c4d-azure-we-a${var.attempt}"
  managed_image_resource_group_name                = "rg-images"
  shared_gallery_image_version_exclude_from_latest = true
  azure_tags                                       = local.resource_tags
  communicator                                     = "ssh"
  ssh_username                                     = "packer"
  ssh_timeout                                      = "20m"

  shared_image_gallery_destination {
    subscription        = "00000000-0000-0000-0000-000000000000"
    resource_group      = "rg-images"
    gallery_name        = "platform_gallery"
    image_name          = "web-multicloud"
    image_version       = "7.0.${var.attempt}"
    replication_regions = ["westeurope", "northeurope"]
  }
}

build {
  name    = "azure-we"
  sources = ["source.azure-arm.azure-we"]

  provisioner "shell" {
    script = "${var.inputs_dir}/p0-inline.sh"
  }

  provisioner "ansible" {
    playbook_file = "${var.inputs_dir}/p1-playbook.yml"
    user          = "packer"
    ansible_env_vars = [
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=True",
      "ANSIBLE_SSH_ARGS=-o HostKeyAlgorithms=+ssh-rsa -o PubkeyAcceptedKeyTypes=+ssh-rsa",
    ]
  }

  provisioner "file" {
    source      = "${var.inputs_dir}/p2-file"
    destination = "/tmp/goldenimage-p2"
  }

  provisioner "shell" {
    inline = [
      "sudo install -D -m 0644 /tmp/goldenimage-p2 '/etc/motd'",
      "rm -f /tmp/goldenimage-p2",
    ]
  }

  # Generalize: no machine identity, host keys, authorized keys or shell history in the image.
  provisioner "shell" {
    inline = [
      "set -eu",
      "if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs --seed || cloud-init clean --logs; fi",
      "truncate -s 0 /etc/machine-id",
      "rm -f /var/lib/dbus/machine-id",
      "rm -f /etc/ssh/ssh_host_*",
      "find /root /home -path '*/.ssh/authorized_keys' -type f -delete 2>/dev/null || true",
      "find /root /home -maxdepth 2 -name '.*_history' -type f -delete 2>/dev/null || true",
      "rm -rf /tmp/* /var/tmp/*",
      "if command -v waagent >/dev/null 2>&1; then waagent -force -deprovision+user; fi",
      "sync",
    ]
    execute_command = "chmod +x {{ .Path }}; sudo sh '{{ .Path }}'"
  }

  post-processor "manifest" {
    output     = var.manifest_path
    strip_path = true
  }
}
