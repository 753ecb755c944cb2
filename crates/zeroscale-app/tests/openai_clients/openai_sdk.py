"""The openai Python SDK against a zeroscale server, as a user would call it.

Run by the e2e suite (section `openai_sdks`) with OPENAI_BASE_URL, OPENAI_API_KEY (a user
with credits), ZS_BROKE_KEY (a user with none), ZS_EMBEDDING_MODEL, ZS_IMAGE_MODEL, ZS_PRICED_IMAGE_MODEL
(an image model with a price) and
TIKTOKEN_CACHE_DIR set. Every check asserts here; what the Rust side compares with its own
calls is printed as one JSON object on stdout.
"""

import base64
import json
import os
import struct
import sys

import openai
import tiktoken

base_url = os.environ["OPENAI_BASE_URL"]
model = os.environ["ZS_EMBEDDING_MODEL"]
image_model = os.environ["ZS_IMAGE_MODEL"]
client = openai.OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
out = {}

# Models.
listed = [m.id for m in client.models.list()]
assert model in listed and image_model in listed, listed
got = client.models.retrieve(model)
assert got.id == model and got.object == "model" and got.owned_by, got
out["models"] = listed

# Embeddings: a string, a list, token ids, lists of token ids; floats and base64.
text = "The cat sat on the mat."
texts = [text, "A feline rested on a rug."]
one = client.embeddings.create(model=model, input=text, encoding_format="float")
assert len(one.data) == 1 and one.usage.prompt_tokens > 0, one
many = client.embeddings.create(model=model, input=texts, encoding_format="float")
assert [d.index for d in many.data] == [0, 1], many
assert many.data[0].embedding == one.data[0].embedding
enc = tiktoken.get_encoding("cl100k_base")
ids = client.embeddings.create(model=model, input=enc.encode(text), encoding_format="float")
lists = client.embeddings.create(
    model=model, input=[enc.encode(t) for t in texts], encoding_format="float"
)
# The SDK's default asks for base64 and decodes it itself; ask for it explicitly too.
default = client.embeddings.create(model=model, input=texts)
raw = client.embeddings.with_raw_response.create(
    model=model, input=text, encoding_format="base64"
)
b64 = json.loads(raw.text)["data"][0]["embedding"]
decoded = list(struct.unpack(f"<{len(base64.b64decode(b64)) // 4}f", base64.b64decode(b64)))
out["embeddings"] = {
    "string": one.data[0].embedding,
    "list": [d.embedding for d in many.data],
    "token_ids": ids.data[0].embedding,
    "token_id_lists": [d.embedding for d in lists.data],
    "sdk_default": [d.embedding for d in default.data],
    "base64": decoded,
    "prompt_tokens": one.usage.prompt_tokens,
}
out["request_id"] = raw.headers.get("x-request-id")

# Images: a signed URL and base64, through the placeholder provider.
by_url = client.images.generate(model=image_model, prompt="a red fox", n=2, size="64x48")
assert len(by_url.data) == 2 and all(d.url for d in by_url.data), by_url
by_b64 = client.images.generate(
    model=image_model, prompt="a red fox", size="64x48", response_format="b64_json"
)
png = base64.b64decode(by_b64.data[0].b64_json)
assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
width, height = struct.unpack(">II", png[16:24])
assert (width, height) == (64, 48), (width, height)
out["image_urls"] = [d.url for d in by_url.data]
out["image_created"] = by_b64.created

# The SDK's exception types.
try:
    openai.OpenAI(api_key="zs_not_a_key", max_retries=0).models.list()
    raise AssertionError("a bad key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401 and e.code == "invalid_api_key", e.body
try:
    client.models.retrieve("no-such-model")
    raise AssertionError("an unknown model was found")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e.body
try:
    client.embeddings.create(model="no-such-model", input=text)
    raise AssertionError("an unknown model embedded")
except openai.NotFoundError as e:
    assert e.code == "model_not_found" and e.param == "model", e.body
try:
    client.embeddings.create(model=model, input=[[99999999]])
    raise AssertionError("a token id outside the vocabulary was accepted")
except openai.BadRequestError as e:
    assert e.type == "invalid_request_error" and e.param == "input", e.body
try:
    client.images.generate(model=image_model, prompt="a red fox", size="9000x9000")
    raise AssertionError("an impossible size was accepted")
except openai.BadRequestError as e:
    assert e.param == "size", e.body
broke = openai.OpenAI(api_key=os.environ["ZS_BROKE_KEY"])  # default retries
try:
    broke.images.generate(
        model=os.environ["ZS_PRICED_IMAGE_MODEL"], prompt="a red fox", size="64x48"
    )
    raise AssertionError("a user without credits got an image")
except openai.RateLimitError as e:
    assert e.code == "insufficient_quota" and e.type == "insufficient_quota", e.body
    assert e.response.headers.get("x-should-retry") == "false", e.response.headers
try:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}]
    )
    raise AssertionError("chat completions answered")
except openai.NotFoundError as e:
    assert e.code == "unsupported_endpoint", e.body
out["errors_checked"] = True

json.dump(out, sys.stdout)
