/*
 * Starts one Elasticsearch node in this JVM, the way the published test
 * framework's MockNode does (no bootstrap checks, no entitlement agent, no
 * CLI): java -cp 'lib/*:classes' org.elasticsearch.node.Launcher HOME
 *
 * HOME/config/elasticsearch.yml holds every setting (written by
 * tests/harness/elasticsearch_node.py), HOME/config/log4j2.properties the
 * logging. The plugins come from the classpath: transport-netty4 (HTTP and
 * transport) and A4cAnalysisPlugin (what the jobs index's analyzer needs from
 * analysis-common, which Elastic does not publish to Maven Central). SIGTERM
 * closes the node (a shutdown hook) and the JVM exits; so does the end of the
 * process named by -Da4c.parent.pid.
 */
package org.elasticsearch.node;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public final class Launcher {
    private static final List<String> PLUGINS = List.of(
        "org.elasticsearch.transport.netty4.Netty4Plugin",
        "a4c.elasticsearch.A4cAnalysisPlugin",
        "a4c.elasticsearch.A4cRootPlugin"
    );

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable e) {
            // Node threads that already started would keep the JVM alive: a failed start must end it.
            e.printStackTrace();
            System.err.flush();
            Runtime.getRuntime().halt(1);
        }
    }

    private static void run(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: Launcher HOME (HOME/config/elasticsearch.yml holds the settings)");
            System.exit(64);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        LogConfigurator.registerErrorListener();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            Settings.builder().put(Environment.PATH_HOME_SETTING.getKey(), home.toString()).build(),
            Collections.emptyMap(), home.resolve("config"), () -> "a4c-test"
        );
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment, true);

        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (String name : PLUGINS) {
            plugins.add(Class.forName(name).asSubclass(Plugin.class));
        }
        NodeServiceProvider services = new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader loader) {
                return new ClasspathPluginsService(env.settings(), env, plugins);
            }
        };
        PluginsLoader none = PluginsLoader.createPluginsLoader(Collections.emptySet(), Collections.emptySet(), Map.of(), false);
        Node node = new Node(NodeConstruction.prepareConstruction(environment, none, services, true));

        CountDownLatch stopped = new CountDownLatch(1);
        Thread keepAlive = new Thread(() -> {
            try {
                stopped.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "a4c-keep-alive");
        keepAlive.setDaemon(false);
        keepAlive.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                node.awaitClose(10, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "a4c-shutdown"));
        node.start();
        watchParent();
    }

    /** With -Da4c.parent.pid=N the node stops (cleanly) once process N is gone: a crashed test run leaves no JVM behind. */
    private static void watchParent() {
        String pid = System.getProperty("a4c.parent.pid");
        if (pid == null || pid.isEmpty()) {
            return;
        }
        ProcessHandle parent = ProcessHandle.of(Long.parseLong(pid)).orElse(null);
        Thread watcher = new Thread(() -> {
            while (parent != null && parent.isAlive()) {
                try {
                    Thread.sleep(1000);
                } catch (InterruptedException e) {
                    return;
                }
            }
            System.exit(0);
        }, "a4c-parent-watch");
        watcher.setDaemon(true);
        watcher.start();
    }
}
