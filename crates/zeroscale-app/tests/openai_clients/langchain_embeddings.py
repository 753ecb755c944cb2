"""LangChain's OpenAIEmbeddings with its default settings (it counts tokens with tiktoken
and sends token ids) against a zeroscale server. Prints the vectors as JSON for the e2e
suite to compare with `/v1/embeddings`."""

import json
import os
import sys

from langchain_openai import OpenAIEmbeddings

embeddings = OpenAIEmbeddings(model=os.environ["ZS_EMBEDDING_MODEL"])
documents = json.loads(os.environ["ZS_DOCUMENTS"])
query = os.environ["ZS_QUERY"]
json.dump(
    {
        "documents": embeddings.embed_documents(documents),
        "query": embeddings.embed_query(query),
    },
    sys.stdout,
)
