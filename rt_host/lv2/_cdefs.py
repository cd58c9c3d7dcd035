"""C declarations of the parts of lilv.h and the LV2 headers this binding uses.

cffi's ABI mode reads these at import time and loads ``liblilv-0.so.0`` with
``dlopen``: nothing is compiled at install. The ``lilv_instance_*`` helpers are
``static inline`` in lilv.h (they are not exported by the shared library), so
``LilvInstanceImpl`` and ``LV2_Descriptor`` are declared here and the binding
calls the plugin through its descriptor, exactly as the inline helpers do.
"""

CDEFS = r"""
typedef struct LilvWorldImpl       LilvWorld;
typedef struct LilvNodeImpl        LilvNode;
typedef struct LilvPluginImpl      LilvPlugin;
typedef struct LilvPluginClassImpl LilvPluginClass;
typedef struct LilvPortImpl        LilvPort;
typedef struct LilvScalePointImpl  LilvScalePoint;
typedef struct LilvIterImpl        LilvIter;
typedef struct LilvNodesImpl       LilvNodes;
typedef struct LilvPluginsImpl     LilvPlugins;
typedef struct LilvScalePointsImpl LilvScalePoints;

typedef uint32_t LV2_URID;
typedef void*    LV2_Handle;
typedef void*    LV2_URID_Map_Handle;
typedef void*    LV2_URID_Unmap_Handle;

typedef struct {
    const char* URI;
    void*       data;
} LV2_Feature;

typedef struct {
    LV2_URID_Map_Handle handle;
    LV2_URID (*map)(LV2_URID_Map_Handle handle, const char* uri);
} LV2_URID_Map;

typedef struct {
    LV2_URID_Unmap_Handle handle;
    const char* (*unmap)(LV2_URID_Unmap_Handle handle, LV2_URID urid);
} LV2_URID_Unmap;

typedef struct {
    int         context;   /* LV2_Options_Context, an enum */
    uint32_t    subject;
    LV2_URID    key;
    uint32_t    size;
    LV2_URID    type;
    const void* value;
} LV2_Options_Option;

typedef struct {
    uint32_t size;
    uint32_t type;
} LV2_Atom;

typedef struct {
    uint32_t unit;
    uint32_t pad;
} LV2_Atom_Sequence_Body;

typedef struct {
    LV2_Atom               atom;
    LV2_Atom_Sequence_Body body;
} LV2_Atom_Sequence;

typedef struct LV2_Descriptor {
    const char* URI;
    LV2_Handle (*instantiate)(const struct LV2_Descriptor* descriptor,
                              double sample_rate, const char* bundle_path,
                              const LV2_Feature* const* features);
    void (*connect_port)(LV2_Handle instance, uint32_t port, void* data);
    void (*activate)(LV2_Handle instance);
    void (*run)(LV2_Handle instance, uint32_t sample_count);
    void (*deactivate)(LV2_Handle instance);
    void (*cleanup)(LV2_Handle instance);
    const void* (*extension_data)(const char* uri);
} LV2_Descriptor;

typedef struct {
    const LV2_Descriptor* lv2_descriptor;
    LV2_Handle            lv2_handle;
    void*                 pimpl;
} LilvInstance;

/* nodes */
LilvNode*   lilv_new_uri(LilvWorld* world, const char* uri);
void        lilv_node_free(LilvNode* val);
bool        lilv_node_equals(const LilvNode* value, const LilvNode* other);
bool        lilv_node_is_uri(const LilvNode* value);
bool        lilv_node_is_literal(const LilvNode* value);
bool        lilv_node_is_float(const LilvNode* value);
bool        lilv_node_is_int(const LilvNode* value);
bool        lilv_node_is_bool(const LilvNode* value);
const char* lilv_node_as_string(const LilvNode* value);
const char* lilv_node_as_uri(const LilvNode* value);
float       lilv_node_as_float(const LilvNode* value);
int         lilv_node_as_int(const LilvNode* value);

/* node collections */
unsigned        lilv_nodes_size(const LilvNodes* collection);
LilvIter*       lilv_nodes_begin(const LilvNodes* collection);
const LilvNode* lilv_nodes_get(const LilvNodes* collection, LilvIter* i);
LilvIter*       lilv_nodes_next(const LilvNodes* collection, LilvIter* i);
bool            lilv_nodes_is_end(const LilvNodes* collection, LilvIter* i);
void            lilv_nodes_free(LilvNodes* collection);

/* plugin collections */
unsigned          lilv_plugins_size(const LilvPlugins* collection);
LilvIter*         lilv_plugins_begin(const LilvPlugins* collection);
const LilvPlugin* lilv_plugins_get(const LilvPlugins* collection, LilvIter* i);
LilvIter*         lilv_plugins_next(const LilvPlugins* collection, LilvIter* i);
bool              lilv_plugins_is_end(const LilvPlugins* collection, LilvIter* i);
const LilvPlugin* lilv_plugins_get_by_uri(const LilvPlugins* plugins, const LilvNode* uri);

/* scale points */
unsigned              lilv_scale_points_size(const LilvScalePoints* collection);
LilvIter*             lilv_scale_points_begin(const LilvScalePoints* collection);
const LilvScalePoint* lilv_scale_points_get(const LilvScalePoints* collection, LilvIter* i);
LilvIter*             lilv_scale_points_next(const LilvScalePoints* collection, LilvIter* i);
bool                  lilv_scale_points_is_end(const LilvScalePoints* collection, LilvIter* i);
void                  lilv_scale_points_free(LilvScalePoints* collection);
const LilvNode*       lilv_scale_point_get_label(const LilvScalePoint* point);
const LilvNode*       lilv_scale_point_get_value(const LilvScalePoint* point);

/* world */
LilvWorld*         lilv_world_new(void);
void               lilv_world_free(LilvWorld* world);
void               lilv_world_load_all(LilvWorld* world);
const LilvPlugins* lilv_world_get_all_plugins(const LilvWorld* world);

/* plugin */
bool                   lilv_plugin_verify(const LilvPlugin* plugin);
const LilvNode*        lilv_plugin_get_uri(const LilvPlugin* plugin);
const LilvNode*        lilv_plugin_get_bundle_uri(const LilvPlugin* plugin);
LilvNode*              lilv_plugin_get_name(const LilvPlugin* plugin);
const LilvPluginClass* lilv_plugin_get_class(const LilvPlugin* plugin);
const LilvNode*        lilv_plugin_class_get_label(const LilvPluginClass* plugin_class);
LilvNode*              lilv_plugin_get_author_name(const LilvPlugin* plugin);
LilvNode*              lilv_plugin_get_project(const LilvPlugin* plugin);
LilvNodes*             lilv_plugin_get_required_features(const LilvPlugin* plugin);
LilvNodes*             lilv_plugin_get_optional_features(const LilvPlugin* plugin);
uint32_t               lilv_plugin_get_num_ports(const LilvPlugin* plugin);
void                   lilv_plugin_get_port_ranges_float(const LilvPlugin* plugin,
                                                         float* min_values,
                                                         float* max_values,
                                                         float* def_values);
const LilvPort*        lilv_plugin_get_port_by_index(const LilvPlugin* plugin, uint32_t index);
bool                   lilv_plugin_has_latency(const LilvPlugin* plugin);
uint32_t               lilv_plugin_get_latency_port_index(const LilvPlugin* plugin);
LilvInstance*          lilv_plugin_instantiate(const LilvPlugin* plugin, double sample_rate,
                                               const LV2_Feature* const* features);
void                   lilv_instance_free(LilvInstance* instance);

/* port */
LilvNodes*       lilv_port_get_value(const LilvPlugin* plugin, const LilvPort* port,
                                     const LilvNode* predicate);
LilvNodes*       lilv_port_get_properties(const LilvPlugin* plugin, const LilvPort* port);
bool             lilv_port_has_property(const LilvPlugin* plugin, const LilvPort* port,
                                        const LilvNode* property);
const LilvNode*  lilv_port_get_symbol(const LilvPlugin* plugin, const LilvPort* port);
LilvNode*        lilv_port_get_name(const LilvPlugin* plugin, const LilvPort* port);
const LilvNodes* lilv_port_get_classes(const LilvPlugin* plugin, const LilvPort* port);
bool             lilv_port_is_a(const LilvPlugin* plugin, const LilvPort* port,
                                const LilvNode* port_class);
void             lilv_port_get_range(const LilvPlugin* plugin, const LilvPort* port,
                                     LilvNode** deflt, LilvNode** min, LilvNode** max);
LilvScalePoints* lilv_port_get_scale_points(const LilvPlugin* plugin, const LilvPort* port);
"""
