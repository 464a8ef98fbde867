// The lab's Kafka broker (lab/kafka-broker.ts), for real: a KRaft broker from the jars scripts/setup
// installs, on free ports on ::1 in a temp folder, driven with @platformatic/kafka. Everything it
// starts is stopped at the end, by PID, even when a test fails.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Admin, Consumer, MessagesStreamFallbackModes, MessagesStreamModes, ProduceAcks, Producer, stringDeserializers, stringSerializers, type Message } from "@platformatic/kafka";
import { freePort } from "../helpers/ports";
import { brokerPid, clusterIdFor, formatBroker, KAFKA_VERSION, kafkaClasspath, startBroker, stopBroker, type BrokerLayout } from "../../lab/kafka-broker";

function missingJars(): string | undefined {
    try {
        kafkaClasspath();
        return undefined;
    } catch (e) {
        return (e as Error).message;
    }
}
// Without the jars each test is reported as skipped, with the reason and the fix (scripts/setup).
const skip = missingJars();

const alive = (pid: number) => {
    try {
        process.kill(pid, 0);
        return !fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z");
    } catch {
        return false;
    }
};

test("scripts/setup installs the Kafka version lab/kafka-broker.ts runs", () => {
    const setup = fs.readFileSync(path.join(__dirname, "../../scripts/setup"), "utf8");
    assert.match(setup, new RegExp(`^KAFKA_VERSION=${KAFKA_VERSION.replace(/\./g, "\\.")}$`, "m"));
});

describe(`the lab's Kafka ${KAFKA_VERSION} broker`, () => {
    let layout: BrokerLayout;
    let pid: number | undefined;
    const TOPIC = "lab.events";

    after(async () => {
        // Stops only the broker whose pid file and command line are this test's (stopBroker checks both).
        if (layout) {
            try {
                await stopBroker(layout, 5000);
            } finally {
                // Belt and braces: the PID we started, should its pid file be gone.
                if (pid && alive(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(layout.dir)) process.kill(pid, "SIGKILL");
                fs.rmSync(layout.dir, { recursive: true, force: true });
            }
        }
    });

    test("starts on ::1 (format + start) and answers on every listener", { skip }, async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-kafka-"));
        const [local, mgmt, controller] = [await freePort(), await freePort(), await freePort()];
        layout = {
            dir,
            clusterId: clusterIdFor(dir),
            listeners: [{ name: "LOCAL", host: "::1", port: local }, { name: "MGMT", host: "::1", port: mgmt }],
            controllerPort: controller,
            heapMb: 384,
        };
        const t0 = Date.now();
        pid = await startBroker(layout, (m) => console.log(`  [${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}`));
        console.log(`  broker ready in ${Date.now() - t0} ms (format + start), pid ${pid}`);
        assert.equal(brokerPid(layout), pid);
        // Each listener advertises itself: a client bootstrapped on MGMT is sent to MGMT's port.
        for (const x of layout.listeners) {
            const admin = new Admin({ clientId: "broker-test", bootstrapBrokers: [{ host: x.host, port: x.port }] });
            try {
                const md = await admin.metadata({ topics: [] });
                assert.deepEqual([...md.brokers.values()].map((b) => [b.host, b.port]), [["::1", x.port]], x.name);
            } finally {
                await admin.close();
            }
        }
        assert.ok(fs.statSync(path.join(dir, "broker.log")).size > 0, "the broker logs to dir/broker.log");
    });

    test("a second startBroker is a no-op", { skip }, async () => {
        assert.ok(pid, "the broker started");
        assert.equal(await startBroker(layout), pid);
        assert.equal(brokerPid(layout), pid);
    });

    test("a topic takes idempotent acks=all writes and a consumer group reads them back in order", { skip }, async () => {
        assert.ok(pid, "the broker started");
        const bootstrapBrokers = [{ host: "::1", port: layout.listeners[0].port }];
        const admin = new Admin({ clientId: "broker-test-admin", bootstrapBrokers });
        const producer = new Producer({ clientId: "broker-test-producer", bootstrapBrokers, idempotent: true, acks: ProduceAcks.ALL, serializers: stringSerializers });
        const consumer = new Consumer({ clientId: "broker-test-consumer", groupId: "broker-test", bootstrapBrokers, deserializers: stringDeserializers, maxWaitTime: 500 });
        try {
            await admin.createTopics({ topics: [TOPIC], partitions: 1, replicas: 1 });
            // auto.create.topics.enable=false: asking for a missing topic does not create it. (Asked
            // through metadata: the client's producer retries an unknown topic instead of failing.)
            await assert.rejects(admin.metadata({ topics: ["no-such-topic"], autocreateTopics: true }), /Unknown topic/);

            const batch = Array.from({ length: 100 }, (_, i) => ({ topic: TOPIC, key: `k${i % 5}`, value: JSON.stringify({ i, park: "lab" }) }));
            const sent = await producer.send({ messages: batch });
            assert.equal(sent.offsets?.[0]?.offset, 0n, "the first batch starts at offset 0");

            const stream = await consumer.consume({ topics: [TOPIC], mode: MessagesStreamModes.COMMITTED, fallbackMode: MessagesStreamFallbackModes.EARLIEST, autocommit: 100 });
            const received: Message<string, string, string, string>[] = [];
            let waiter: (() => void) | undefined;
            stream.on("data", (m: Message<string, string, string, string>) => {
                received.push(m);
                waiter?.();
            });
            const until = async (n: number, ms = 30_000) => {
                const deadline = Date.now() + ms;
                while (received.length < n) {
                    if (Date.now() > deadline) throw new Error(`received ${received.length} of ${n} messages`);
                    await new Promise<void>((resolve) => {
                        waiter = resolve;
                        setTimeout(resolve, 100);
                    });
                }
            };
            try {
                await until(batch.length);
                assert.deepEqual(received.map((m) => [m.key, m.value, m.offset]), batch.map((m, i) => [m.key, m.value, BigInt(i)]));

                // Produce -> consume round trips, one message at a time, with the group's stream already polling.
                const rtts: number[] = [];
                for (let i = 0; i < 30; i++) {
                    const n = received.length + 1;
                    const t = process.hrtime.bigint();
                    await producer.send({ messages: [{ topic: TOPIC, key: "rtt", value: `rtt-${i}` }] });
                    await until(n, 10_000);
                    rtts.push(Number(process.hrtime.bigint() - t) / 1e6);
                    assert.equal(received[n - 1].value, `rtt-${i}`);
                }
                const sorted = [...rtts].sort((a, b) => a - b);
                console.log(`  produce->consume round trip over ${rtts.length}: median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} ms, min ${sorted[0].toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms`);
                assert.equal(received.length, batch.length + 30, "nothing duplicated");
            } finally {
                await stream.close();
            }
        } finally {
            await consumer.close().catch(() => undefined); // its stream is closed above
            await producer.close().catch(() => undefined);
            await admin.close().catch(() => undefined);
        }
    });

    test("formatBroker refuses storage formatted for another cluster", { skip }, async () => {
        assert.ok(pid, "the broker started");
        const other = { ...layout, clusterId: clusterIdFor("another park") };
        await assert.rejects(formatBroker(other), (e: Error) => e.message.includes(`formatted for cluster '${layout.clusterId}'`) && e.message.includes(other.clusterId));
        // And the same cluster id is a no-op (the running broker's storage is left as it is).
        await formatBroker(layout);
    });

    test("stopBroker stops it and leaves no process", { skip }, async () => {
        assert.ok(pid, "the broker started");
        const t = Date.now();
        assert.deepEqual(await stopBroker(layout), [`kafka broker pid ${pid}`]);
        console.log(`  stopped in ${Date.now() - t} ms`);
        for (let i = 0; i < 50 && alive(pid); i++) await sleep(20);
        assert.equal(alive(pid), false, `pid ${pid} is gone`);
        assert.equal(brokerPid(layout), undefined);
        assert.deepEqual(await stopBroker(layout), [], "a second stop has nothing to do");
    });
});

