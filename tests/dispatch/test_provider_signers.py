"""Each signer against the provider's own worked example (values copied from the cited source)."""

from __future__ import annotations

from urllib.parse import urlencode

from apps.dispatch.providers import adapter_class, aliyun, tencent, twilio


def test_aliyun_signature_matches_the_sms_signature_document_example() -> None:
    # help.aliyun.com/document_detail/56189 (dysmsapi "签名机制"): GET, AccessKeySecret testSecret.
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert aliyun.string_to_sign("GET", params).startswith(
        "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D15300000001"
        "%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C"
    )
    assert aliyun.signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert aliyun.signature("GET", {**params, "Signature": "ignored"}, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_signature_matches_the_rpc_signature_document_example() -> None:
    # Alibaba Cloud RPC "Signature method" document: DescribeRegions, AccessKeySecret testsecret.
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert aliyun.signature("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_percent_encoding_follows_rfc3986() -> None:
    assert aliyun.percent_encode("a b*~/+=") == "a%20b%2A~%2F%2B%3D"


def test_tencent_tc3_matches_the_signature_v3_document_example() -> None:
    # cloud.tencent.com/document/api/213/30654 (签名方法 v3), the CVM DescribeInstances example;
    # the same vector is in TencentCloud/tencentcloud-sdk-* signer tests.
    payload = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    authorization = tencent.tc3_authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        "Gu5t9xGARNpq86cd98joQYCN3*******",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        payload=payload,
        timestamp=1551113065,
    )
    assert authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


# twilio.com/docs/usage/security example values, as in twilio/twilio-python tests/unit/test_request_validator.py.
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_signature_matches_the_documented_example() -> None:
    assert twilio.compute_signature("12345", TWILIO_URL, list(TWILIO_PARAMS.items())) == TWILIO_SIGNATURE


def test_twilio_receipt_signature_accepts_the_example_and_rejects_tampering() -> None:
    adapter = adapter_class("twilio")({"account_sid": "AC1", "auth_token": "12345", "from_number": "+15005550006"})
    body = urlencode(TWILIO_PARAMS).encode()

    def verify(url: str, body: bytes, signature: str | None) -> bool:
        headers = {"X-Twilio-Signature": signature} if signature is not None else {}
        return adapter.verify_receipt_signature(method="POST", url=url, headers=headers, body=body)

    assert verify(TWILIO_URL, body, TWILIO_SIGNATURE)
    # A proxy that adds the default port does not break it (Twilio's SDKs try both forms).
    assert verify(TWILIO_URL.replace(".com", ".com:443"), body, TWILIO_SIGNATURE)
    assert not verify(TWILIO_URL, body.replace(b"Digits=1234", b"Digits=1235"), TWILIO_SIGNATURE)
    assert not verify(TWILIO_URL.replace("foo=1", "foo=2"), body, TWILIO_SIGNATURE)
    assert not verify(TWILIO_URL, body, "RSOYDt4T1cUTdK1PDd93/VVr8B8X")
    assert not verify(TWILIO_URL, body, None)
