// amqplib (Node) scenario. Passes unchanged against RabbitMQ 3.10 and against warren:
//   cd tests/node && npm ci && AMQP_URL=amqp://guest:guest@127.0.0.1:5672 node --test
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const amqp = require('amqplib');

const URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672';
const uniq = (p) => `${p}-${crypto.randomBytes(5).toString('hex')}`;

function waitFor(predicate, ms = 5000) {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      if (predicate()) return resolve();
      if (Date.now() - start > ms) return reject(new Error('timed out'));
      setTimeout(tick, 10);
    };
    tick();
  });
}

let conn;
before(async () => {
  conn = await amqp.connect(URL);
  conn.on('error', () => {});
});
after(async () => {
  await conn.close();
});

test('connects and sees RabbitMQ capabilities', async () => {
  const caps = conn.connection.serverProperties.capabilities;
  for (const c of ['publisher_confirms', 'basic.nack', 'consumer_cancel_notify', 'exchange_exchange_bindings']) {
    assert.equal(caps[c], true, c);
  }
});

test('declares, binds, publishes and consumes with properties intact', async () => {
  const ch = await conn.createChannel();
  const ex = uniq('ex');
  await ch.assertExchange(ex, 'direct', { autoDelete: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, ex, 'key');
  const got = [];
  await ch.consume(queue, (m) => { got.push(m); ch.ack(m); });
  ch.publish(ex, 'key', Buffer.from('hello'), {
    contentType: 'text/plain',
    headers: { n: 1, s: 'x', nested: { deep: true } },
    correlationId: 'c-9',
    messageId: 'm-9',
    persistent: true,
    priority: 4,
    timestamp: 1700000000,
    appId: 'node',
  });
  await waitFor(() => got.length === 1);
  const m = got[0];
  assert.equal(m.content.toString(), 'hello');
  assert.equal(m.fields.routingKey, 'key');
  assert.equal(m.fields.exchange, ex);
  assert.equal(m.properties.contentType, 'text/plain');
  assert.deepEqual(m.properties.headers, { n: 1, s: 'x', nested: { deep: true } });
  assert.equal(m.properties.correlationId, 'c-9');
  assert.equal(m.properties.messageId, 'm-9');
  assert.equal(m.properties.deliveryMode, 2);
  assert.equal(m.properties.priority, 4);
  assert.equal(m.properties.timestamp, 1700000000);
  assert.equal(m.properties.appId, 'node');
  await ch.close();
});

test('confirm channel: every publish is acknowledged', async () => {
  const ch = await conn.createConfirmChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  for (let i = 0; i < 100; i++) ch.sendToQueue(queue, Buffer.from(String(i)));
  await ch.waitForConfirms();
  const { messageCount } = await ch.checkQueue(queue);
  assert.equal(messageCount, 100);
  await ch.close();
});

test('prefetch limits unacknowledged deliveries', async () => {
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  for (let i = 0; i < 6; i++) ch.sendToQueue(queue, Buffer.from(String(i)));
  await ch.prefetch(2);
  const got = [];
  await ch.consume(queue, (m) => got.push(m));
  await waitFor(() => got.length === 2);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(got.length, 2);
  ch.ack(got[1], true);
  await waitFor(() => got.length === 4);
  await ch.close();
});

test('nack with requeue redelivers with the redelivered flag', async () => {
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from('again'));
  const got = [];
  await ch.consume(queue, (m) => {
    got.push(m);
    if (got.length === 1) ch.nack(m, false, true);
    else ch.ack(m);
  });
  await waitFor(() => got.length === 2);
  assert.equal(got[0].fields.redelivered, false);
  assert.equal(got[1].fields.redelivered, true);
  assert.equal(got[1].content.toString(), 'again');
  await ch.close();
});

test('quorum queue: confirmed, consumed, and requeued to the back with x-delivery-count', async () => {
  const ch = await conn.createConfirmChannel();
  const queue = uniq('qq');
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  for (const body of ['A', 'B', 'C']) ch.sendToQueue(queue, Buffer.from(body), { persistent: true });
  await ch.waitForConfirms();
  await ch.prefetch(1);
  const got = [];
  await ch.consume(queue, (m) => {
    if (m === null) return; // cancelled: the queue is deleted at the end
    got.push(m);
    if (got.length === 1) ch.nack(m, false, true);
    else ch.ack(m);
  });
  await waitFor(() => got.length === 4);
  // A requeued message goes to the back of a quorum queue, and counts its deliveries.
  assert.deepEqual(got.map((m) => m.content.toString()), ['A', 'B', 'C', 'A']);
  assert.equal(got[0].properties.headers['x-delivery-count'], undefined);
  assert.equal(got[3].fields.redelivered, true);
  assert.equal(Number(got[3].properties.headers['x-delivery-count']), 1);
  await ch.deleteQueue(queue);
  await ch.close();
});

test('a channel error closes that channel only', async () => {
  const bad = await conn.createChannel();
  bad.on('error', () => {});
  await assert.rejects(bad.checkQueue('no-such-queue'), (err) => {
    assert.equal(err.code, 404);
    assert.match(err.message, /NOT_FOUND - no queue 'no-such-queue' in vhost '\/'/);
    return true;
  });
  const good = await conn.createChannel();
  const { queue } = await good.assertQueue('', { exclusive: true });
  assert.ok(queue.startsWith('amq.gen-'));
  await good.close();
});

test('topic routing follows RabbitMQ rules', async () => {
  const ch = await conn.createChannel();
  const ex = uniq('topic');
  await ch.assertExchange(ex, 'topic', { autoDelete: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, ex, 'stock.*.nyse');
  await ch.bindQueue(queue, ex, 'news.#');
  for (const key of ['stock.ibm.nyse', 'stock.nyse', 'news', 'news.tech.ai', 'weather.today']) {
    ch.publish(ex, key, Buffer.from(key));
  }
  const got = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (!m) break;
    got.push(m.content.toString());
  }
  assert.deepEqual(got, ['stock.ibm.nyse', 'news', 'news.tech.ai']);
  await ch.close();
});
