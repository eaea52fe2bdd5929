// Consumes N messages from a queue and prints them as JSON lines, so that a message published
// by one client library can be checked as another one sees it.
//   node interop.js <amqp-url> <queue> <count>
'use strict';
const amqp = require('amqplib');

async function main() {
  const [url, queue, count] = process.argv.slice(2);
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  let seen = 0;
  await new Promise((resolve) => {
    ch.consume(queue, (m) => {
      const p = m.properties;
      console.log(JSON.stringify({
        body: m.content.toString('base64'),
        contentType: p.contentType,
        headers: p.headers,
        correlationId: p.correlationId,
        deliveryMode: p.deliveryMode,
        priority: p.priority,
      }));
      ch.ack(m);
      if (++seen === Number(count)) resolve();
    });
  });
  await conn.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
