// The official openai Node SDK against a zeroscale server: embeddings.create and
// models.list. OPENAI_BASE_URL and OPENAI_API_KEY come from the environment (NODE_PATH
// points at the pinned SDK); prints JSON for the e2e suite to compare.
const { OpenAI, NotFoundError } = require("openai");

async function main() {
  const client = new OpenAI();
  const model = process.env.ZS_EMBEDDING_MODEL;
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  const made = await client.embeddings.create({
    model,
    input: ["The cat sat on the mat.", "A feline rested on a rug."],
  });
  let notFound = null;
  try {
    await client.models.retrieve("no-such-model");
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
    notFound = e.code;
  }
  process.stdout.write(
    JSON.stringify({
      models,
      embeddings: made.data.map((d) => d.embedding),
      prompt_tokens: made.usage.prompt_tokens,
      not_found: notFound,
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
