import{d as I,M as N,a as G,b as U,t as K,f as R,X as $,S as q,G as j,w as Z}from"./index-DWYsY1_q.js";class w{static get componentName(){return Object.prototype.hasOwnProperty.call(this,"extensionName")?this.extensionName:""}constructor(e){e&&(this.opts=e)}equals(e){return this===e?!0:this.constructor===e.constructor&&I(this.opts,e.opts,1)}getShaders(e){return null}getSubLayerProps(e){const{defaultProps:t}=e.constructor,r={updateTriggers:{}};for(const a in t)if(a in this.props){const i=t[a],l=this.props[a];r[a]=l,i&&i.type==="accessor"&&(r.updateTriggers[a]=this.props.updateTriggers[a],typeof l=="function"&&(r[a]=this.getSubLayerAccessor(l)))}return r}initializeState(e,t){}updateState(e,t){}onNeedsRedraw(e){}getNeedsPickingBuffer(e){return!1}draw(e,t){}finalizeState(e,t){}}w.defaultProps={};w.extensionName="LayerExtension";const L=`layout(std140) uniform dataFilterUniforms {
  bool useSoftMargin;
  bool enabled;
  bool transformSize;
  bool transformColor;
  vec4 min;
  vec4 softMin;
  vec4 softMax;
  vec4 max;
  vec4 min64High;
  vec4 max64High;
  highp uvec4 categoryBitMask;
} dataFilter;
`,W=`
#ifdef DATAFILTER_TYPE
  in DATAFILTER_TYPE filterValues;
#ifdef DATAFILTER_DOUBLE
  in DATAFILTER_TYPE filterValues64Low;
#endif
#endif

#ifdef DATACATEGORY_TYPE
  in DATACATEGORY_TYPE filterCategoryValues;
#endif

out float dataFilter_value;

#ifdef DATAFILTER_TYPE
  float dataFilter_getMin(float _) {
    return dataFilter.min.x;
  }
  vec2 dataFilter_getMin(vec2 _) {
    return dataFilter.min.xy;
  }
  vec3 dataFilter_getMin(vec3 _) {
    return dataFilter.min.xyz;
  }
  vec4 dataFilter_getMin(vec4 _) {
    return dataFilter.min;
  }

  float dataFilter_getSoftMin(float _) {
    return dataFilter.softMin.x;
  }
  vec2 dataFilter_getSoftMin(vec2 _) {
    return dataFilter.softMin.xy;
  }
  vec3 dataFilter_getSoftMin(vec3 _) {
    return dataFilter.softMin.xyz;
  }
  vec4 dataFilter_getSoftMin(vec4 _) {
    return dataFilter.softMin;
  }

  float dataFilter_getSoftMax(float _) {
    return dataFilter.softMax.x;
  }
  vec2 dataFilter_getSoftMax(vec2 _) {
    return dataFilter.softMax.xy;
  }
  vec3 dataFilter_getSoftMax(vec3 _) {
    return dataFilter.softMax.xyz;
  }
  vec4 dataFilter_getSoftMax(vec4 _) {
    return dataFilter.softMax;
  }

  float dataFilter_getMax(float _) {
    return dataFilter.max.x;
  }
  vec2 dataFilter_getMax(vec2 _) {
    return dataFilter.max.xy;
  }
  vec3 dataFilter_getMax(vec3 _) {
    return dataFilter.max.xyz;
  }
  vec4 dataFilter_getMax(vec4 _) {
    return dataFilter.max;
  }

  float dataFilter_getMin64High(float _) {
    return dataFilter.min64High.x;
  }
  vec2 dataFilter_getMin64High(vec2 _) {
    return dataFilter.min64High.xy;
  }
  vec3 dataFilter_getMin64High(vec3 _) {
    return dataFilter.min64High.xyz;
  }
  vec4 dataFilter_getMin64High(vec4 _) {
    return dataFilter.min64High;
  }

  float dataFilter_getMax64High(float _) {
    return dataFilter.max64High.x;
  }
  vec2 dataFilter_getMax64High(vec2 _) {
    return dataFilter.max64High.xy;
  }
  vec3 dataFilter_getMax64High(vec3 _) {
    return dataFilter.max64High.xyz;
  }
  vec4 dataFilter_getMax64High(vec4 _) {
    return dataFilter.max64High;
  }
#endif

float dataFilter_reduceValue(float value) {
  return value;
}
float dataFilter_reduceValue(vec2 value) {
  return min(value.x, value.y);
}
float dataFilter_reduceValue(vec3 value) {
  return min(min(value.x, value.y), value.z);
}
float dataFilter_reduceValue(vec4 value) {
  return min(min(value.x, value.y), min(value.z, value.w));
}

#ifdef DATAFILTER_TYPE
  void dataFilter_setValue(DATAFILTER_TYPE valueFromMin, DATAFILTER_TYPE valueFromMax) {
    DATAFILTER_TYPE dataFilter_min = dataFilter_getMin(valueFromMin);
    DATAFILTER_TYPE dataFilter_softMin = dataFilter_getSoftMin(valueFromMin);
    DATAFILTER_TYPE dataFilter_softMax = dataFilter_getSoftMax(valueFromMin);
    DATAFILTER_TYPE dataFilter_max = dataFilter_getMax(valueFromMin);
    if (dataFilter.useSoftMargin) {
      // smoothstep results are undefined if edge0 ≥ edge1
      // Fallback to ignore filterSoftRange if it is truncated by filterRange
      DATAFILTER_TYPE leftInRange = mix(
        smoothstep(dataFilter_min, dataFilter_softMin, valueFromMin),
        step(dataFilter_min, valueFromMin),
        step(dataFilter_softMin, dataFilter_min)
      );
      DATAFILTER_TYPE rightInRange = mix(
        1.0 - smoothstep(dataFilter_softMax, dataFilter_max, valueFromMax),
        step(valueFromMax, dataFilter_max),
        step(dataFilter_max, dataFilter_softMax)
      );
      dataFilter_value = dataFilter_reduceValue(leftInRange * rightInRange);
    } else {
      dataFilter_value = dataFilter_reduceValue(
        step(dataFilter_min, valueFromMin) * step(valueFromMax, dataFilter_max)
      );
    }
  }
#endif

#ifdef DATACATEGORY_TYPE
  void dataFilter_setCategoryValue(DATACATEGORY_TYPE category) {
    #if DATACATEGORY_CHANNELS == 1 // One 128-bit mask
    uint dataFilter_masks = dataFilter.categoryBitMask[category / 32u];
    #elif DATACATEGORY_CHANNELS == 2 // Two 64-bit masks
    uvec2 dataFilter_masks = uvec2(
      dataFilter.categoryBitMask[category.x / 32u],
      dataFilter.categoryBitMask[category.y / 32u + 2u]
    );
    #elif DATACATEGORY_CHANNELS == 3 // Three 32-bit masks
    uvec3 dataFilter_masks = dataFilter.categoryBitMask.xyz;
    #else // Four 32-bit masks
    uvec4 dataFilter_masks = dataFilter.categoryBitMask;
    #endif

    // Shift mask and extract relevant bits
    DATACATEGORY_TYPE dataFilter_bits = DATACATEGORY_TYPE(dataFilter_masks) >> (category & 31u);
    dataFilter_bits &= 1u;

    #if DATACATEGORY_CHANNELS == 1
    if (dataFilter_bits == 0u) dataFilter_value = 0.0;
    #else
    if (any(equal(dataFilter_bits, DATACATEGORY_TYPE(0u)))) dataFilter_value = 0.0;
    #endif
  }
#endif
`,D=`
${L}
${W}
`,X=`
in float dataFilter_value;
`,O=`
${L}
${X}
`;function V(o){if(!o||!("extensions"in o))return{};const{filterRange:e=[-1,1],filterEnabled:t=!0,filterTransformSize:r=!0,filterTransformColor:a=!0,categoryBitMask:i}=o,l=o.filterSoftRange||e,s=n=>Array.isArray(n)?[n[0]||0,n[1]||0,n[2]||0,n[3]||0]:[n,0,0,0];return{...Number.isFinite(e[0])?{min:s(e[0]),softMin:s(l[0]),softMax:s(l[1]),max:s(e[1])}:{min:s(e.map(n=>n[0])),softMin:s(l.map(n=>n[0])),softMax:s(l.map(n=>n[1])),max:s(e.map(n=>n[1]))},enabled:t,useSoftMargin:!!o.filterSoftRange,transformSize:t&&r,transformColor:t&&a,...i&&{categoryBitMask:i}}}function J(o){if(!o||!("extensions"in o))return{};const e=V(o),t=e.min.map(Math.fround);e.min=e.min.map((a,i)=>a-t[i]),e.softMin=e.softMin.map((a,i)=>a-t[i]),e.min64High=t;const r=e.max.map(Math.fround);return e.max=e.max.map((a,i)=>a-r[i]),e.softMax=e.softMax.map((a,i)=>a-r[i]),e.max64High=r,e}const Y={"vs:#main-start":`
    dataFilter_value = 1.0;
    if (dataFilter.enabled) {
      #ifdef DATAFILTER_TYPE
        #ifdef DATAFILTER_DOUBLE
          dataFilter_setValue(
            filterValues - dataFilter_getMin64High(filterValues) + filterValues64Low,
            filterValues - dataFilter_getMax64High(filterValues) + filterValues64Low
          );
        #else
          dataFilter_setValue(filterValues, filterValues);
        #endif
      #endif

      #ifdef DATACATEGORY_TYPE
        dataFilter_setCategoryValue(filterCategoryValues);
      #endif
    }
  `,"vs:#main-end":`
    if (dataFilter_value == 0.0) {
      gl_Position = vec4(0.);
    }
  `,"vs:DECKGL_FILTER_SIZE":`
    if (dataFilter.transformSize) {
      size = size * dataFilter_value;
    }
  `,"fs:DECKGL_FILTER_COLOR":`
    if (dataFilter_value == 0.0) discard;
    if (dataFilter.transformColor) {
      color.a *= dataFilter_value;
    }
  `};function k(o){return{useSoftMargin:"i32",enabled:"i32",transformSize:"i32",transformColor:"i32",min:"vec4<f32>",softMin:"vec4<f32>",softMax:"vec4<f32>",max:"vec4<f32>",min64High:"vec4<f32>",max64High:"vec4<f32>",categoryBitMask:"vec4<u32>"}}const Q={name:"dataFilter",vs:D,fs:O,inject:Y,getUniforms:V,uniformTypesFromOptions:k},ee={name:"dataFilter",vs:D,fs:O,inject:Y,getUniforms:J,uniformTypesFromOptions:k},te=`#version 300 es
#define SHADER_NAME data-filter-vertex-shader

#ifdef FLOAT_TARGET
  in float filterIndices;
  in float filterPrevIndices;
#else
  in vec2 filterIndices;
  in vec2 filterPrevIndices;
#endif

out vec4 vColor;
const float component = 1.0 / 255.0;

void main() {
  #ifdef FLOAT_TARGET
    dataFilter_value *= float(filterIndices != filterPrevIndices);
    gl_Position = vec4(0.0, 0.0, 0.0, 1.0);
    vColor = vec4(0.0, 0.0, 0.0, 1.0);
  #else
    // Float texture is not supported: pack result into 4 channels x 256 px x 64px
    dataFilter_value *= float(filterIndices.x != filterPrevIndices.x);
    float col = filterIndices.x;
    float row = filterIndices.y * 4.0;
    float channel = floor(row);
    row = fract(row);
    vColor = component * vec4(bvec4(channel == 0.0, channel == 1.0, channel == 2.0, channel == 3.0));
    gl_Position = vec4(col * 2.0 - 1.0, row * 2.0 - 1.0, 0.0, 1.0);
  #endif
  gl_PointSize = 1.0;
}
`,ae=`#version 300 es
#define SHADER_NAME data-filter-fragment-shader
precision highp float;

in vec4 vColor;

out vec4 fragColor;

void main() {
  if (dataFilter_value < 0.5) {
    discard;
  }
  fragColor = vColor;
}
`,re=["float32-renderable-webgl","texture-blend-float-webgl"];function ie(o){return re.every(e=>o.features.has(e))}function ne(o,e){return e?o.createFramebuffer({width:1,height:1,colorAttachments:[o.createTexture({format:"rgba32float",dimension:"2d",width:1,height:1})]}):o.createFramebuffer({width:256,height:64,colorAttachments:[o.createTexture({format:"rgba8unorm",dimension:"2d",width:256,height:64})]})}function oe(o,e,t,r){return t.defines.NON_INSTANCED_MODEL=1,r&&(t.defines.FLOAT_TARGET=1),new N(o,{id:"data-filter-aggregation-model",vertexCount:1,isInstanced:!1,topology:"point-list",disableWarnings:!0,vs:te,fs:ae,bufferLayout:e,...t})}const se={blend:!0,blendColorSrcFactor:"one",blendColorDstFactor:"one",blendAlphaSrcFactor:"one",blendAlphaDstFactor:"one",blendColorOperation:"add",blendAlphaOperation:"add",depthCompare:"never"},le={getFilterValue:{type:"accessor",value:0},getFilterCategory:{type:"accessor",value:0},onFilteredItemsChange:{type:"function",value:null,optional:!0},filterEnabled:!0,filterRange:[-1,1],filterSoftRange:null,filterCategories:[0],filterTransformSize:!0,filterTransformColor:!0},fe={categorySize:0,filterSize:1,fp64:!1,countItems:!1},ce={1:"uint",2:"uvec2",3:"uvec3",4:"uvec4"},de={1:"float",2:"vec2",3:"vec3",4:"vec4"};class P extends w{constructor(e={}){super({...fe,...e})}getShaders(e){const{categorySize:t,filterSize:r,fp64:a}=e.opts,i={};t&&(i.DATACATEGORY_TYPE=ce[t],i.DATACATEGORY_CHANNELS=t),r&&(i.DATAFILTER_TYPE=de[r],i.DATAFILTER_DOUBLE=!!a);const l=a?ee:Q;return l.uniformTypes=l.uniformTypesFromOptions(e.opts),{modules:[l],defines:i}}initializeState(e,t){const r=this.getAttributeManager(),{categorySize:a,filterSize:i,fp64:l}=t.opts;r&&(i&&r.add({filterValues:{size:i,type:l?"float64":"float32",stepMode:"dynamic",accessor:"getFilterValue"}}),a&&r.add({filterCategoryValues:{size:a,stepMode:"dynamic",accessor:"getFilterCategory",type:"uint32",transform:a===1?n=>t._getCategoryKey.call(this,n,0):n=>n.map((d,g)=>t._getCategoryKey.call(this,d,g))}}));const{device:s}=this.context;if(r&&t.opts.countItems){const n=ie(s);r.add({filterVertexIndices:{size:n?1:2,vertexOffset:1,type:"unorm8",accessor:(c,{index:m})=>{const F=c&&c.__source?c.__source.index:m;return n?(F+1)%255:[(F+1)%255,Math.floor(F/255)%255]},shaderAttributes:{filterPrevIndices:{vertexOffset:0},filterIndices:{vertexOffset:1}}}});const d=ne(s,n),g=oe(s,r.getBufferLayouts({isInstanced:!1}),t.getShaders.call(this,t),n);this.setState({filterFBO:d,filterModel:g})}}updateState({props:e,oldProps:t,changeFlags:r},a){const i=this.getAttributeManager(),{categorySize:l}=a.opts;if(this.state.filterModel){const s=i.attributes.filterValues?.needsUpdate()||i.attributes.filterCategoryValues?.needsUpdate()||e.filterEnabled!==t.filterEnabled||e.filterRange!==t.filterRange||e.filterSoftRange!==t.filterSoftRange||e.filterCategories!==t.filterCategories;s&&this.setState({filterNeedsUpdate:s})}i?.attributes.filterCategoryValues&&((i.attributes.filterCategoryValues.needsUpdate()||!I(e.filterCategories,t.filterCategories,2))&&this.setState({categoryBitMask:null}),r.dataChanged&&(this.setState({categoryMap:Array(l).fill(0).map(()=>({}))}),i.attributes.filterCategoryValues.setNeedsUpdate("categoryMap")))}draw(e,t){const r=this.state.filterFBO,a=this.state.filterModel,i=this.state.filterNeedsUpdate;this.state.categoryBitMask||t._updateCategoryBitMask.call(this,e,t);const{onFilteredItemsChange:l,extensions:s,filterEnabled:n,filterRange:d,filterSoftRange:g,filterTransformSize:c,filterTransformColor:m,filterCategories:F}=this.props,h={extensions:s,filterEnabled:n,filterRange:d,filterSoftRange:g,filterTransformSize:c,filterTransformColor:m,filterCategories:F};if(this.state.categoryBitMask&&(h.categoryBitMask=this.state.categoryBitMask),this.setShaderModuleProps({dataFilter:h}),i&&l&&a){const y=this.getAttributeManager(),{attributes:{filterValues:_,filterCategoryValues:u,filterVertexIndices:p}}=y;a.setVertexCount(this.getNumInstances());const C={..._?.getValue(),...u?.getValue(),...p?.getValue()};a.setAttributes(C),a.shaderInputs.setProps({dataFilter:h});const S=[0,0,r.width,r.height],M=a.device.beginRenderPass({id:"data-filter-aggregation",framebuffer:r,parameters:{viewport:S},clearColor:[0,0,0,0]});a.setParameters(se),a.draw(M),M.end();const T=a.device.readPixelsToArrayWebGL(r);let E=0;for(let x=0;x<T.length;x++)E+=T[x];l({id:this.id,count:E}),this.state.filterNeedsUpdate=!1}}finalizeState(){const e=this.state.filterFBO,t=this.state.filterModel;e?.destroy(),t?.destroy()}_updateCategoryBitMask(e,t){const{categorySize:r}=t.opts;if(!r)return;const{filterCategories:a}=this.props,i=new Uint32Array([0,0,0,0]),l=r===1?[a]:a,s=r===1?128:r===2?64:32;for(let n=0;n<l.length;n++){const d=l[n];for(const g of d){const c=t._getCategoryKey.call(this,g,n);if(c<s){const m=n*(s/32)+Math.floor(c/32);i[m]+=Math.pow(2,c%32)}else G.warn(`Exceeded maximum number of categories (${s})`)()}}this.state.categoryBitMask=i}_getCategoryKey(e,t){const r=this.state.categoryMap[t];return e in r||(r[e]=Object.keys(r).length),r[e]}}P.defaultProps=le;P.extensionName="DataFilterExtension";const A=()=>new Promise(o=>requestAnimationFrame(o));function z(o,e){j(Z),document.body.innerHTML='<div id="bench" style="position:fixed;inset:0"></div>';const t=new $({container:"bench",style:{version:8,sources:{},layers:[{id:"bg",type:"background",paint:{"background-color":"#0d1726"}}]},center:o,zoom:e,attributionControl:!1,fadeDuration:0});return new Promise(r=>t.once("load",()=>r(t)))}async function b(o,e){const t=[];let r=await A();for(let a=0;a<o;a++){e(a);const i=await A();t.push(i-r),r=i}return t}async function ge(o,e,t,r,a=20){const i=await z(t,r);let l=0;const s=new U({interleaved:!1,layers:[],onAfterRender:()=>{l=performance.now()}});i.addControl(s),await A();const n=performance.now(),d=await fetch(o,{headers:{Authorization:`Bearer ${e}`}}),g=new Uint8Array(await d.arrayBuffer()),c=performance.now(),m=K(g),F=R(m,"x"),h=R(m,"y"),y=R(m,"t"),_=m.numRows,u=new Float64Array(2*_),p=new Float32Array(_),C=y.reduce((f,v)=>Math.min(f,v),1/0);for(let f=0;f<_;f++)u[2*f]=F[f],u[2*f+1]=h[f],p[f]=(y[f]-C)/1e3;const S=performance.now(),M=p.reduce((f,v)=>Math.max(f,v),0),T=(f,v)=>new q({id:"pts",data:{length:_,attributes:{getPosition:{value:u,size:2},getFilterValue:{value:p,size:1}}},getRadius:2,radiusUnits:"pixels",getFillColor:[255,180,60,200],extensions:[new P({filterSize:1})],filterRange:[f,v]});s.setProps({layers:[T(0,M)]});const E=performance.now();for(;l<E;)await A();const x=l-n,B=await b(a,f=>i.panBy([f%10<5?8:-8,0],{animate:!1})),H=await b(a,f=>{const v=f/a*M;s.setProps({layers:[T(v,v+M/10)]})});return{fetchMs:c-n,parseMs:S-c,bytes:g.byteLength,rows:_,firstFrameMs:x,panFrameMs:B,playFrameMs:H}}async function me(o,e,t,r=20){const a=await z(e,t);await A();const i=performance.now(),s=await(await fetch(o)).text(),n=performance.now(),d=JSON.parse(s),g=performance.now();a.addSource("pts",{type:"geojson",data:d}),a.addLayer({id:"pts",type:"circle",source:"pts",paint:{"circle-radius":2,"circle-color":"#ffb43c"}}),await new Promise(u=>a.once("idle",()=>u()));const c=performance.now()-i,m=await b(r,u=>a.panBy([u%10<5?8:-8,0],{animate:!1})),F=d.features.map(u=>u.properties.t),h=Math.min(...F.slice(0,1e3)),y=36e5,_=await b(r,u=>{const p=h+u/r*y;a.setFilter("pts",["all",[">=",["get","t"],p],["<",["get","t"],p+y/10]])});return{fetchMs:n-i,parseMs:g-n,bytes:s.length,rows:d.features.length,firstFrameMs:c,panFrameMs:m,playFrameMs:_}}export{ge as arrow,me as geojson};
