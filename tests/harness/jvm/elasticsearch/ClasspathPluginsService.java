/*
 * The plugins of a harness node, loaded from the JVM's classpath rather than
 * from modules/ directories: the way the published test framework's
 * MockPluginsService does it. Modules loaded from directories would need the
 * server on the module path (transport-netty4 is a named module that requires
 * org.elasticsearch.sslconfig); one classpath is simpler and starts faster.
 */
package org.elasticsearch.plugins;

import org.elasticsearch.Build;
import org.elasticsearch.action.admin.cluster.node.info.PluginsAndModules;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.ServiceLoader;

public final class ClasspathPluginsService extends PluginsService {
    private final List<LoadedPlugin> classpathPlugins;

    public ClasspathPluginsService(Settings settings, Environment environment, Collection<Class<? extends Plugin>> classes) {
        super(settings, environment.configDir(), new PluginsLoader(Collections.emptySet(), Collections.emptySet(), Collections.emptyMap()));
        List<LoadedPlugin> loaded = new ArrayList<>();
        for (Class<? extends Plugin> type : classes) {
            Plugin plugin = loadPlugin(type, settings, environment.configDir());
            PluginDescriptor descriptor = new PluginDescriptor(
                type.getName(), "classpath plugin", "NA", Build.current().version(),
                Integer.toString(Runtime.version().feature()), type.getName(), null,
                Collections.emptyList(), false, false, false, false
            );
            loaded.add(new LoadedPlugin(descriptor, plugin, ClasspathPluginsService.class.getClassLoader()));
        }
        loadExtensions(loaded);
        this.classpathPlugins = List.copyOf(loaded);
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        return classpathPlugins;
    }

    @Override
    public PluginsAndModules info() {
        // Listed as modules, as a distribution lists transport-netty4 and analysis-common.
        return new PluginsAndModules(List.of(), classpathPlugins.stream().map(LoadedPlugin::descriptor).toList());
    }

    @Override
    public <T> List<? extends T> loadServiceProviders(Class<T> service) {
        List<T> found = new ArrayList<>();
        ServiceLoader.load(service, ClasspathPluginsService.class.getClassLoader()).forEach(found::add);
        return found;
    }
}
