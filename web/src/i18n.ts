// English and Chinese, switchable at run time.
export type Lang = "en" | "zh";

const T: Record<string, [string, string]> = {
  title: ["CityOS digital twin", "CityOS 城市数字孪生"],
  login: ["Log in", "登录"],
  logout: ["Log out", "退出"],
  username: ["User name", "用户名"],
  password: ["Password", "密码"],
  layers: ["Layers", "图层"],
  themes: ["Views", "专题"],
  all: ["All", "全部"],
  traffic: ["Traffic", "交通"],
  safety: ["Public safety", "公共安全"],
  environment: ["Environment", "生态环境"],
  hazmat: ["Hazardous chemicals", "危险化学品"],
  time: ["Time", "时间"],
  play: ["Play", "播放"],
  pause: ["Pause", "暂停"],
  live: ["Live", "实时"],
  brush: ["Brush region", "框选区域"],
  kpi_events_today: ["Events today", "今日事件"],
  kpi_overdue: ["Overdue", "超期"],
  kpi_open_warnings: ["Open warnings", "未处理预警"],
  kpi_air: ["Air quality now", "当前空气质量"],
  kpi_on_time: ["On-time rate", "按时办结率"],
  chart_station: ["Station: observed vs forecast", "站点：实测与预测"],
  chart_region: ["Selected region: vehicles and flows", "选定区域：车辆与流量"],
  chart_dept: ["On-time rate by department", "各部门按时办结率"],
  observed: ["observed", "实测"],
  predicted: ["predicted", "预测"],
  inflow: ["inflow", "流入"],
  outflow: ["outflow", "流出"],
  vehicles_in: ["vehicles in region", "区域内车辆"],
  detail: ["Detail", "详情"],
  dispatch: ["Dispatch", "派遣"],
  reassign: ["Reassign", "改派"],
  acknowledge: ["Acknowledge", "确认"],
  open_event: ["Turn into event", "转为事件"],
  department: ["Department", "部门"],
  status: ["Status", "状态"],
  severity: ["Severity", "级别"],
  unavailable: ["not available on this server", "服务器未提供"],
  forbidden: ["not permitted", "无权访问"],
  masked: ["masked", "已脱敏"],
  rows: ["rows", "行"],
  close: ["Close", "关闭"],
  "layer.districts": ["Districts", "行政区"],
  "layer.labels": ["Labels", "标注"],
  "layer.roads": ["Roads", "道路"],
  "layer.water": ["Water", "水系"],
  no_model: ["no deployed model: no forecast from the AI engine", "无已部署模型：AI 引擎无法预测"],
  scored_fallback: ["showing the batch-scored forecast dataset instead", "改为显示批量预测数据集"],
  predicted_by: ["predicted by", "预测模型"],
  tiles: ["vector tiles", "矢量瓦片"],
  "layer.pois": ["Points of interest", "兴趣点"],
  "layer.series": ["Sensors (value at time)", "传感器（当前值）"],
  "layer.forecast": ["Forecast vs observed", "预测与实测"],
  "layer.vehicles": ["Vehicles (positions)", "车辆（位置）"],
  "layer.trips": ["Trajectory playback", "轨迹回放"],
  "layer.hexagon": ["Hexagon density", "蜂窝聚合"],
  "layer.flows": ["Region in/out flows", "区域流入流出"],
  "layer.od": ["OD arcs", "OD 弧线"],
  "layer.speed": ["Road speed", "路段车速"],
  "layer.events": ["Events (workflow state)", "事件（办理状态）"],
  "layer.warnings": ["Warnings (severity)", "预警（级别）"],
  "layer.points": ["Points", "点"],
  "layer.regions": ["Regions", "区域"],
  "layer.lines": ["Lines", "线"],
};

let lang: Lang = (localStorage.getItem("cityos.twin.lang") as Lang) || "en";

export function t(key: string): string {
  const v = T[key];
  if (!v) return key;
  return lang === "zh" ? v[1] : v[0];
}

export function getLang(): Lang {
  return lang;
}

export function setLang(l: Lang): void {
  lang = l;
  localStorage.setItem("cityos.twin.lang", l);
  document.documentElement.lang = l === "zh" ? "zh-CN" : "en";
  for (const el of Array.from(document.querySelectorAll<HTMLElement>("[data-i18n]"))) {
    el.textContent = t(el.dataset.i18n ?? "");
  }
}
