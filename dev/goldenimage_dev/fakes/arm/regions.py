"""Azure regions: names as requests spell them (`westeurope`, `West Europe`) and as responses
do. Gallery image versions report target regions by display name, as the real service does, so
that code comparing regions has to normalize them."""

from __future__ import annotations

DISPLAY = {
    "westeurope": "West Europe",
    "northeurope": "North Europe",
    "francecentral": "France Central",
    "germanywestcentral": "Germany West Central",
    "swedencentral": "Sweden Central",
    "uksouth": "UK South",
    "eastus": "East US",
    "eastus2": "East US 2",
    "westus2": "West US 2",
    "centralus": "Central US",
    "southeastasia": "Southeast Asia",
    "japaneast": "Japan East",
    "australiaeast": "Australia East",
}
DEFAULT_LOCATIONS = tuple(DISPLAY)


def normalize(name: str) -> str:
    return name.replace(" ", "").lower()


def display(name: str) -> str:
    return DISPLAY.get(normalize(name), name)
