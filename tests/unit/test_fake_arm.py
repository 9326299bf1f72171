"""The Azure Resource Manager fake's pure pieces: the template language, resource IDs, list
filters; and its two WSGI apps called in-process (no sockets, no SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from werkzeug.test import Client, TestResponse

from goldenimage_dev.fakes.arm import Arm
from goldenimage_dev.fakes.arm.ids import ResourceId
from goldenimage_dev.fakes.arm.resources import parse_filter
from goldenimage_dev.fakes.arm.state import Resource
from goldenimage_dev.fakes.arm.templates import Evaluator, Scope, TemplateError, parse, plan
from goldenimage_dev.fakes.hypervisor import Recorder

SUB = "00000000-0000-0000-0000-0000000000bb"
TENANT = "00000000-0000-0000-0000-0000000000aa"
CLIENT = "00000000-0000-0000-0000-000000000001"
SCOPE = Scope(SUB, TENANT, "pkr-rg", "westeurope", "pkrdp1", {"env": "test"})
API = {"api-version": "2024-03-01"}

# The shape of the template Packer 1.6.6's azure-arm deploys (trimmed to what matters).
PACKER_TEMPLATE: dict[str, Any] = {
    "$schema": "http://schema.management.azure.com/schemas/2014-04-01-preview/deploymentTemplate.json",
    "contentVersion": "1.0.0.0",
    "parameters": {
        name: {"type": "string"}
        for name in ("adminUsername", "nicName", "publicIPAddressName", "subnetName", "virtualNetworkName", "vmName")
    },
    "variables": {
        "location": "[resourceGroup().location]",
        "addressPrefix": "10.0.0.0/16",
        "subnetName": "[parameters('subnetName')]",
        "subnetRef": "[concat(variables('vnetID'),'/subnets/',variables('subnetName'))]",
        "virtualNetworkName": "[parameters('virtualNetworkName')]",
        "virtualNetworkResourceGroup": "[resourceGroup().name]",
        "vnetID": "[resourceId(variables('virtualNetworkResourceGroup'), 'Microsoft.Network/virtualNetworks', "
        "variables('virtualNetworkName'))]",
        "sshKeyPath": "[concat('/home/',parameters('adminUsername'),'/.ssh/authorized_keys')]",
    },
    "resources": [
        {
            "apiVersion": "2017-03-30",
            "type": "Microsoft.Compute/virtualMachines",
            "name": "[parameters('vmName')]",
            "location": "[variables('location')]",
            "dependsOn": ["[concat('Microsoft.Network/networkInterfaces/', parameters('nicName'))]"],
            "properties": {
                "networkProfile": {
                    "networkInterfaces": [
                        {"id": "[resourceId('Microsoft.Network/networkInterfaces', parameters('nicName'))]"}
                    ]
                },
                "osProfile": {"linuxConfiguration": {"ssh": {"publicKeys": [{"path": "[variables('sshKeyPath')]"}]}}},
            },
        },
        {
            "apiVersion": "2017-04-01",
            "type": "Microsoft.Network/networkInterfaces",
            "name": "[parameters('nicName')]",
            "location": "[variables('location')]",
            "dependsOn": [
                "[concat('Microsoft.Network/publicIPAddresses/', parameters('publicIPAddressName'))]",
                "[concat('Microsoft.Network/virtualNetworks/', variables('virtualNetworkName'))]",
            ],
            "properties": {
                "ipConfigurations": [{"name": "ipconfig", "properties": {"subnet": {"id": "[variables('subnetRef')]"}}}]
            },
        },
        {
            "apiVersion": "2017-04-01",
            "type": "Microsoft.Network/virtualNetworks",
            "name": "[variables('virtualNetworkName')]",
            "location": "[variables('location')]",
            "properties": {"subnets": [{"name": "[variables('subnetName')]"}]},
        },
        {
            "apiVersion": "2017-04-01",
            "type": "Microsoft.Network/publicIPAddresses",
            "name": "[parameters('publicIPAddressName')]",
            "location": "[variables('location')]",
            "tags": {"managed-by": "operator"},
        },
    ],
}
PACKER_PARAMETERS = {
    "adminUsername": {"value": "packer"},
    "nicName": {"value": "pkrni1"},
    "publicIPAddressName": {"value": "pkrip1"},
    "subnetName": {"value": "pkrsn1"},
    "virtualNetworkName": {"value": "pkrvn1"},
    "vmName": {"value": "pkrvm1"},
}


def _eval(expression: str, parameters: dict[str, Any] | None = None, variables: dict[str, Any] | None = None) -> Any:
    template = {
        "parameters": {k: {"type": "string"} for k in parameters or {}},
        "variables": variables or {},
    }
    given = {k: {"value": v} for k, v in (parameters or {}).items()}
    return Evaluator(template, given, SCOPE).value(expression)


# --- the template language -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("[concat('a', 'b', 'c')]", "abc"),
        ("[concat(createArray(1), createArray(2, 3))]", [1, 2, 3]),
        ("[resourceGroup().name]", "pkr-rg"),
        ("[resourceGroup().location]", "westeurope"),
        ("[resourceGroup().tags.env]", "test"),
        ("[subscription().subscriptionId]", SUB),
        ("[toLower('AbC')]", "abc"),
        ("[format('{0}-{1}', 'vm', 2)]", "vm-2"),
        ("[if(equals('A', 'a'), 'same', 'different')]", "same"),
        ("[createObject('k', 'v').k]", "v"),
        ("[split('a/b/c', '/')[1]]", "b"),
        ("[length(createArray(1, 2, 3))]", 3),
        ("[replace('it''s', '''', '')]", "its"),
        ("[[not an expression]", "[not an expression]"),
        ("plain text", "plain text"),
        ("[deployment().name]", "pkrdp1"),
    ],
)
def test_functions(expression: str, expected: Any) -> None:
    assert _eval(expression) == expected


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            "'Microsoft.Network/virtualNetworks', 'vn'",
            f"/subscriptions/{SUB}/resourceGroups/pkr-rg/providers/Microsoft.Network/virtualNetworks/vn",
        ),
        (
            "'other-rg', 'Microsoft.Network/virtualNetworks', 'vn'",
            f"/subscriptions/{SUB}/resourceGroups/other-rg/providers/Microsoft.Network/virtualNetworks/vn",
        ),
        (
            "'s2', 'rg2', 'Microsoft.Network/virtualNetworks/subnets', 'vn', 'sn'",
            "/subscriptions/s2/resourceGroups/rg2/providers/Microsoft.Network/virtualNetworks/vn/subnets/sn",
        ),
        (
            "resourceGroup().name, 'Microsoft.Compute/galleries/images', 'g/i'",
            f"/subscriptions/{SUB}/resourceGroups/pkr-rg/providers/Microsoft.Compute/galleries/g/images/i",
        ),
    ],
)
def test_resource_id(arguments: str, expected: str) -> None:
    assert _eval(f"[resourceId({arguments})]") == expected


def test_variables_refer_to_variables_and_parameters_in_any_order() -> None:
    variables = {"b": "[concat(variables('a'), '-', parameters('p'))]", "a": "[toUpper(parameters('p'))]"}
    assert _eval("[variables('b')]", {"p": "x"}, variables) == "X-x"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("[variables('missing')]", "variable 'missing' is not found"),
        ("[parameters('missing')]", "parameter 'missing' is not found"),
        ("[nosuchfunction()]", "'nosuchfunction' is not valid"),
        ("[reference('x')]", "not supported"),
        ("[concat('a']", "ends too early"),
        ("[variables('loop')]", "refers to itself"),
        ("[resourceId('vn')]", "invalid arguments"),
        ("[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vn')]", "needs 2 name segments"),
    ],
)
def test_invalid_expressions(expression: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        _eval(expression, variables={"loop": "[variables('loop')]"})


def test_parse_keeps_quotes_escaped() -> None:
    assert _eval("[concat('a''b')]") == "a'b"
    parse("concat('x', parameters('y'))")  # parses without a template


def test_packer_template_plan_orders_by_dependencies() -> None:
    planned = plan(PACKER_TEMPLATE, PACKER_PARAMETERS, SCOPE)
    names = [p.name for p in planned]
    assert names.index("pkrip1") < names.index("pkrni1")
    assert names.index("pkrvn1") < names.index("pkrni1") < names.index("pkrvm1")
    nic = next(p for p in planned if p.name == "pkrni1")
    subnet = nic.body["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
    assert subnet == f"{SCOPE.group_id}/providers/Microsoft.Network/virtualNetworks/pkrvn1/subnets/pkrsn1"
    vm = next(p for p in planned if p.name == "pkrvm1")
    assert vm.body["location"] == "westeurope"
    assert vm.depends_on == (nic.id,)
    key = vm.body["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]
    assert key["path"] == "/home/packer/.ssh/authorized_keys"


def test_plan_checks_parameters() -> None:
    missing = {k: v for k, v in PACKER_PARAMETERS.items() if k != "vmName"}
    with pytest.raises(TemplateError, match="'vmName' is not provided"):
        plan(PACKER_TEMPLATE, missing, SCOPE)
    with pytest.raises(TemplateError, match=r"'extra'.*not present in the original template"):
        plan(PACKER_TEMPLATE, {**PACKER_PARAMETERS, "extra": {"value": 1}}, SCOPE)


def test_plan_refuses_what_it_does_not_evaluate() -> None:
    looped = {"resources": [{**PACKER_TEMPLATE["resources"][2], "name": "vn", "copy": {"name": "c", "count": 2}}]}
    with pytest.raises(TemplateError, match="'copy' loop"):
        plan(looped, {}, SCOPE)
    vnet = {**PACKER_TEMPLATE["resources"][2], "name": "vn", "location": "westeurope", "properties": {}}
    dangling = {"resources": [{**vnet, "dependsOn": ["nothing"]}]}
    with pytest.raises(TemplateError, match="'nothing' is not defined"):
        plan(dangling, {}, SCOPE)


# --- ids and filters -----------------------------------------------------------------------


def test_ids_parse_case_insensitively_and_print_canonically() -> None:
    rid = ResourceId.parse(f"/subscriptions/{SUB}/resourcegroups/RG/providers/microsoft.compute/GALLERIES/g/images/i")
    assert str(rid) == f"/subscriptions/{SUB}/resourceGroups/RG/providers/Microsoft.Compute/galleries/g/images/i"
    assert rid.type == "Microsoft.Compute/galleries/images"
    assert rid.parent is not None and rid.parent.name == "g"
    assert ResourceId.parse(f"/subscriptions/{SUB}/resourceGroups/rg").is_group
    with pytest.raises(ValueError, match="not a resource id"):
        ResourceId.parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines")


def _tagged(tags: dict[str, str], name: str = "vm1", location: str = "westeurope") -> Resource:
    rid = ResourceId.of(SUB, "rg", "Microsoft.Compute/virtualMachines", name)
    return Resource(rid, {"tags": tags, "location": location})


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("tagName eq 'goldenimage.io_build-id' and tagValue eq 'b1'", True),
        ("tagname eq 'GOLDENIMAGE.IO_BUILD-ID' and tagvalue eq 'b1'", True),  # names ignore case
        ("tagName eq 'goldenimage.io_build-id' and tagValue eq 'B1'", False),  # values do not
        ("tagName eq 'goldenimage.io_build-id'", True),
        ("tagName eq 'other'", False),
        ("resourceType eq 'microsoft.compute/virtualmachines' and location eq 'westeurope'", True),
        ("substringof('vm', name)", True),
        ("name eq 'vm2'", False),
    ],
)
def test_filters(text: str, matches: bool) -> None:
    assert parse_filter(text)(_tagged({"goldenimage.io_build-id": "b1"})) is matches


def test_a_filter_it_cannot_read_is_refused() -> None:
    with pytest.raises(Exception, match="InvalidFilterInQueryString"):
        parse_filter("tagValue eq 'v'")
    with pytest.raises(Exception, match="InvalidFilterInQueryString"):
        parse_filter("startswith(name, 'x')")


# --- the WSGI apps, in-process -------------------------------------------------------------


@pytest.fixture
def arm() -> Iterator[Arm]:
    fake = Arm(Recorder())
    fake.add_subscription(SUB, TENANT)
    fake.add_resource_group(SUB, "images-rg", "westeurope")
    try:
        yield fake
    finally:
        fake.close()


def _token(arm: Arm) -> dict[str, str]:
    principal = arm.add_principal(TENANT, CLIENT, secret="s")
    return {"Authorization": f"Bearer {arm.tokens.issue(principal, 'https://management.azure.com/')}"}


def _json(response: TestResponse) -> Any:
    return json.loads(response.get_data(as_text=True))


def test_v1_token_endpoint_answers_as_packer_expects(arm: Arm) -> None:
    principal = arm.add_principal(TENANT, CLIENT, secret="s")
    login = Client(arm.login)
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT,
        "client_secret": "s",
        "resource": "https://management.azure.com/",
    }
    response = login.post(f"/{TENANT}/oauth2/token", data=form, query_string={"api-version": "1.0"})
    body = _json(response)
    assert response.status_code == 200
    assert body["expires_in"] == "3599" and body["resource"] == "https://management.azure.com/"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["oid"], claims["tid"], claims["appid"]) == (principal.object_id, TENANT, CLIENT)
    wrong = login.post(f"/{TENANT}/oauth2/token", data={**form, "client_secret": "wrong"})
    assert wrong.status_code == 401 and _json(wrong)["error"] == "invalid_client"
    unknown = login.post(f"/{TENANT}/oauth2/token", data={**form, "client_id": "nobody"})
    assert unknown.status_code == 400 and "AADSTS700016" in _json(unknown)["error_description"]


def test_unauthenticated_requests_get_the_subscription_tenant(arm: Arm) -> None:
    response = Client(arm.management).get(f"/subscriptions/{SUB}", query_string=API)
    assert response.status_code == 401
    assert f'authorization_uri="https://login.windows.net/{TENANT}"' in response.headers["WWW-Authenticate"]
    assert _json(response)["error"]["code"] == "AuthenticationFailed"


def test_routing_ignores_case_and_needs_an_api_version(arm: Arm) -> None:
    client = Client(arm.management)
    headers = _token(arm)
    for path in (f"/subscriptions/{SUB}/resourcegroups/images-rg", f"/SUBSCRIPTIONS/{SUB}/resourceGroups/IMAGES-RG"):
        response = client.get(path, query_string=API, headers=headers)
        assert response.status_code == 200, path
        assert _json(response)["id"] == f"/subscriptions/{SUB}/resourceGroups/images-rg"
    missing = client.get(f"/subscriptions/{SUB}/resourcegroups/images-rg", headers=headers)
    assert missing.status_code == 400 and _json(missing)["error"]["code"] == "MissingApiVersionParameter"
    assert (
        client.head(f"/subscriptions/{SUB}/resourcegroups/nope", query_string=API, headers=headers).status_code == 404
    )


def test_state_is_served_as_json(arm: Arm) -> None:
    state = _json(Client(arm.management).get("/_fake/state"))
    assert [s["subscriptionId"] for s in state["subscriptions"]] == [SUB]
    assert any(r["name"] == "images-rg" for r in state["resources"])


def test_a_new_marketplace_version_joins_its_image(arm: Arm) -> None:
    arm.add_marketplace_image("Debian", "debian-12", "12-gen2", ["0.20250101.1"])
    arm.add_marketplace_image("Debian", "debian-12", "12-gen2", ["0.20250301.1", "0.20250101.1"])
    arm.add_marketplace_image("Debian", "debian-12", "12-gen2", ["0.1"], locations=["northeurope"])
    path = f"/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westeurope/publishers/Debian"
    path += "/artifacttypes/vmimage/offers/debian-12/skus/12-gen2/versions"
    response = Client(arm.management).get(path, query_string=API, headers=_token(arm))
    assert [v["name"] for v in _json(response)] == ["0.20250101.1", "0.20250301.1"]
