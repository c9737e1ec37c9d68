"""TEST-ONLY keys, published on purpose: the simulator verifies JWTs with them and the default run
and the tests sign with them. They protect nothing; never use them for a real provider.
"""

from __future__ import annotations

# RSA 2048, PKCS#8: the private key of the simulated FCM service account.
FCM_SERVICE_ACCOUNT_PRIVATE_KEY = """-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCzbB0DfFCAb90Z
AZHJJRHp6G9+TK1orLB9yTqB/YBui1uDBel0xvpanWp5c0hF+rKWpb23GKtXi/iG
oqdWiR+QxBDfmgd5KiHk69N/taYx2uCM+CXIVHyIZF0Wuo95d3CQbeA+ilr2ZtjM
lUNwLV38kQPYgQqkV4pxnoWgar4DiMB3RQ7TYtR9aLvCCLDxNQSBSfU/Inixo/QS
Uc2+ni6GrCYDL0AcpRZJ2ViSUVd05St8OzzQZW1wNl2Jd3b4sYzoOg5UpPzhKJkE
d9fkLyjP8eaQqEtJ6GIHw19QI6M5keY85Q/uTwLhNiUyypcHyQ6ExxNlTnTQn1Yr
9e2c3zLLAgMBAAECggEAAVRENMHngMQTYbuKvnA5XT+9D7T2tedNmWjzt4HOwULk
Byj0jUpqEWDIKKUrfGU6jHYm3SPgJRJi4XB0B+aVJsflDhsAgivHO4BpvTD1zbm+
3xx5fy3tDD+eFuyD4pT5bwB5YE07Fkc1xPI4IS0c3KGgYyq1jvkdC/FuMP2JcdI+
0KG/cU5VrXnaOCvdhqBUUdjhYqpTkk/O15xvXpEMg7gLCT6JuUxYbN0X8cawUyuA
KX0we4tYJjWhIOQzR8yJYm8n+JnD4Cs8ZWAr5ZH+2Sg5je2vnYtNhGm8ZiTbGGAN
hfG/l+5dYuJbgCUjmyY9LNNoyYnOHvowE/mNrBdW7QKBgQD5JAUG31ZpJfd4Yz/z
/uzB+qOjVCa2ku/g0ooI8ZuoULEGI8Ri1C0Q1mILlol9bIGMM1KhbVY3J7RxwqwN
3fPurRac1USs1gc6Z7RCcj9771W+PHDh4VMZ1NwvSL2/VyZPf7nvBfuA9ohobPDh
Rusu6A2h5Gzw6fgBBS5Pys7mNwKBgQC4XLVQbXFnfJnC9lXyvAwtV1oA9FzrLQD6
glYl0lNrtIAhkRNZz2s/m0RBMC0J08CDm4IQUop/BWUBYm+SO8r3n01pt2h/iNSd
TRt/b1tJI4mXPjUEDBYsI3pmqrlW+c6CcJFnNM4y9JGWivvZ/AFLaL3doDS+SAor
rGD7Ey2ODQKBgQDIFfZ3i3whXB2AMO1WrqBENV+gN2AT9rPxsgSrpCZnqc5R6P26
hT5gLFx3hAGNmkv8Zedxv5ajGx8e0cJOLLfQMnBbqifKSuVpMYoiZxC3HwKUkoPx
1H1h3IKs8tV4yqv44tJXtU1ESDpK61sVAVi1xiXUo9geLzk+0INeD7nURwKBgCx/
Y9vXrol1z375CeGedanz7WtRj6PLpvLPxo82ZqAWXt67L1p777zYcu7w+83laA/b
1tattXPXD3v4EEnRWLnPn1WmyPgPRJH67GojrHrIswroHs+tQyTAI2joR/ewL6HY
HaA1ZJdz5Dfbr9H7OyzCSSFW66QJqzrDTl0LUfF5AoGBAIJCHXCYgYubl2Qmn8vG
i9fVPZambmsoIrfucd6bnmA/bAtt5oIiQKw3ewylg1AtRLcZQIsXmbzV8ops+sk5
d5pKbP/JtiVaRkU3HhQr80aKH7Ff0+Fzvb9B8X3XUK0KMzk1IW8YfqfGUUig48gv
vnst5Y3rEyTx9lJcNqnVXRe8
-----END PRIVATE KEY-----
"""

# EC P-256, PKCS#8: the simulated APNs auth key (what Apple hands out as AuthKey_<key id>.p8).
APNS_AUTH_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgByW0pwQKdudFb4S9
YGV/LyfQyxot5s5sAMFSkr89XUShRANCAAQNE/VOcwrdHKNHU+ghMOFbr9Wnk474
YXKMKRNc5jR2IY1vNvXkuLDxoAptO9YFlDDc6/KirbN0URZq3oz2Pqw2
-----END PRIVATE KEY-----
"""

# The simulated WeChat official account's EncodingAESKey (43 characters, base64 of 32 bytes).
WECHAT_ENCODING_AES_KEY = "IjtFWREwR6tJbkd6fomyZFAQ7A3woFAIR41stxwbU+A"
