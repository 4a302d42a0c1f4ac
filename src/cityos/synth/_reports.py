"""Generated citizen reports with ground truth, for duplicate detection and dispatch.

Each *incident* (a pothole, a dark street light, night construction noise, ...) happens at
a place on the city's road network and is reported by one or more citizens, in Chinese or
English, each with their own paraphrase (synonyms, word order, a landmark or not, filler),
a position scattered around the incident (GPS and "I am across the road") and a time after
it started. Hard negatives are built in: other incidents of the *same category* close by
in place and time (a broken manhole cover 80 m from a pothole, two lights out on two
streets), which a place + category rule cannot tell apart.

Every incident has a responsible department and level, which depend on the incident's
kind (not only its category: a burst water main goes to the water company, a sewage
overflow to the district's drainage office) and, for district-level departments, on the
district whose region contains the incident.

>>> from cityos.synth import make_city
>>> from cityos.synth._reports import make_reports
>>> df = make_reports(make_city(size_km=6.0), n_incidents=50, seed=1)
>>> bool(df["incident_id"].duplicated().any()), sorted(df["lang"].unique())
(True, ['en', 'zh'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from cityos.synth._city import SyntheticCity
from cityos.synth._errors import SynthError

__all__ = ["INCIDENT_KINDS", "IncidentKind", "make_reports"]


@dataclass(frozen=True)
class IncidentKind:
    """One kind of incident: its category (service code), responsible department role and
    level, and phrase variants in both languages."""

    code: str
    category: str
    role: str
    level: str  # "district" (resolved by jurisdiction) or "city"
    zh: tuple[str, ...]
    en: tuple[str, ...]
    zh_detail: tuple[str, ...]
    en_detail: tuple[str, ...]


INCIDENT_KINDS: tuple[IncidentKind, ...] = (
    IncidentKind(
        "pothole",
        "road",
        "road_maintenance",
        "district",
        ("路面有个大坑", "马路上出现坑洼", "路上有深坑", "道路坑槽很深"),
        (
            "big pothole in the road",
            "deep pothole on the street",
            "road has a pothole",
            "pothole in the lane",
        ),
        ("车辆经过要绕行", "电动车差点摔倒", "下雨后积水看不见", "坑越来越大"),
        (
            "cars swerve around it",
            "a cyclist nearly fell",
            "hidden under rain water",
            "getting bigger every day",
        ),
    ),
    IncidentKind(
        "manhole",
        "road",
        "road_maintenance",
        "district",
        ("井盖缺失", "井盖丢了", "下水井盖不见了", "井盖破损塌陷"),
        (
            "manhole cover missing",
            "missing drain cover",
            "manhole cover is broken",
            "open manhole without cover",
        ),
        ("很危险容易掉下去", "晚上看不清", "行人差点踩空", "用树枝临时挡着"),
        (
            "someone could fall in",
            "dangerous at night",
            "a pedestrian almost stepped in",
            "only a branch marks it",
        ),
    ),
    IncidentKind(
        "expressway_damage",
        "road",
        "traffic_bureau",
        "city",
        ("快速路路面塌陷", "环路上路面开裂", "高架桥面破损", "快速路护栏撞坏"),
        (
            "expressway surface collapsed",
            "ring road pavement cracked",
            "elevated road deck damaged",
            "expressway guardrail smashed",
        ),
        ("车流很大很危险", "影响早高峰通行", "多辆车减速避让", "有碎片散落"),
        (
            "heavy traffic at risk",
            "blocking the morning rush",
            "cars braking hard",
            "debris on the lanes",
        ),
    ),
    IncidentKind(
        "light_out",
        "streetlight",
        "lighting",
        "district",
        ("路灯不亮", "一排路灯全黑了", "路灯坏了晚上很黑", "这段路灯熄灭"),
        (
            "street light is out",
            "street lights dark all along the block",
            "broken street lamp, very dark",
            "lamp post not working",
        ),
        ("好几天了", "晚上走路害怕", "小区门口一片漆黑", "影响夜间出行"),
        (
            "for several days",
            "unsafe walking at night",
            "pitch dark outside the gate",
            "hard to see at night",
        ),
    ),
    IncidentKind(
        "pole_down",
        "streetlight",
        "power_supply",
        "city",
        ("灯杆被撞倒", "电线杆倾斜快倒了", "灯杆倒在路边电线外露", "电杆歪了"),
        (
            "light pole knocked down",
            "utility pole leaning badly",
            "pole fell over with wires exposed",
            "power pole tilting",
        ),
        ("电线垂到地面", "有触电危险", "挡住半条路", "刮风时晃得厉害"),
        (
            "wires hanging to the ground",
            "risk of electric shock",
            "blocking half the road",
            "swaying in the wind",
        ),
    ),
    IncidentKind(
        "garbage",
        "sanitation",
        "sanitation",
        "district",
        ("垃圾桶满了没人清", "垃圾堆积如山", "垃圾站溢出来了", "生活垃圾没人收"),
        (
            "garbage bins overflowing",
            "piles of trash not collected",
            "rubbish spilling from the bins",
            "trash pickup missed",
        ),
        ("臭味很大", "招来老鼠苍蝇", "好几天没收了", "堆到路上了"),
        (
            "terrible smell",
            "attracting rats and flies",
            "not collected for days",
            "spreading onto the road",
        ),
    ),
    IncidentKind(
        "dumping",
        "sanitation",
        "urban_management",
        "district",
        ("有人偷倒建筑垃圾", "路边乱倒渣土", "夜里偷倒装修垃圾", "空地被倒满建筑废料"),
        (
            "illegal dumping of construction waste",
            "someone dumped rubble by the road",
            "renovation debris dumped at night",
            "lot filled with building waste",
        ),
        ("一车一车地倒", "扬尘很严重", "占了人行道", "是货车拉来的"),
        ("truck after truck", "dust everywhere", "covering the sidewalk", "brought by a lorry"),
    ),
    IncidentKind(
        "construction_noise",
        "noise",
        "urban_management",
        "district",
        ("工地夜间施工噪音扰民", "半夜还在施工很吵", "晚上工地打桩声音太大", "夜里施工机器轰鸣"),
        (
            "construction noise late at night",
            "building site working after midnight",
            "pile driving at night, very loud",
            "machines roaring at the site at night",
        ),
        ("孩子睡不着觉", "已经连续一周", "凌晨两点还在干", "投诉多次没用"),
        (
            "kids cannot sleep",
            "every night this week",
            "still going at 2 am",
            "complained before, nothing changed",
        ),
    ),
    IncidentKind(
        "loud_music",
        "noise",
        "police",
        "city",
        ("广场舞音响太吵", "楼下酒吧音乐声太大", "邻居聚会吵闹到深夜", "KTV噪音扰民"),
        (
            "loud music from the square dancers",
            "bar downstairs playing music too loud",
            "neighbours partying late",
            "karaoke noise disturbing residents",
        ),
        ("音量开得很大", "一直到十一点", "窗户关了都听得见", "影响休息"),
        ("volume turned way up", "until 11 pm", "audible with windows shut", "cannot rest"),
    ),
    IncidentKind(
        "pipe_burst",
        "water",
        "water_company",
        "city",
        ("自来水管爆裂", "水管破了水流满街", "路面冒水像喷泉", "供水管道漏水严重"),
        (
            "water main burst",
            "broken pipe flooding the street",
            "water gushing from the pavement",
            "serious leak from a supply pipe",
        ),
        ("水已经漫到路上", "周边停水了", "水压很大", "冲出一个坑"),
        (
            "water all over the road",
            "nearby homes lost water",
            "strong pressure",
            "washed out a hole",
        ),
    ),
    IncidentKind(
        "sewage",
        "water",
        "drainage",
        "district",
        ("下水道堵塞污水外溢", "污水井冒水很臭", "雨水口堵了积水", "化粪池满溢"),
        (
            "sewer blocked and overflowing",
            "sewage bubbling out of a drain, foul smell",
            "storm drain clogged, water pooling",
            "septic overflow in the street",
        ),
        ("味道刺鼻", "积水没过脚踝", "流到小区里", "苍蝇很多"),
        ("stinks badly", "ankle-deep water", "running into the compound", "lots of flies"),
    ),
    IncidentKind(
        "illegal_parking",
        "parking",
        "traffic_police",
        "city",
        ("车辆违停堵住路口", "有车乱停占消防通道", "人行道上停满了车", "违章停车堵门"),
        (
            "car illegally parked blocking the junction",
            "vehicle parked in the fire lane",
            "cars parked all over the sidewalk",
            "illegal parking blocking the entrance",
        ),
        ("车主联系不上", "救护车进不来", "停了一整天", "行人只能走机动车道"),
        (
            "owner cannot be reached",
            "ambulance could not get through",
            "parked all day",
            "pedestrians forced into traffic",
        ),
    ),
    IncidentKind(
        "abandoned_vehicle",
        "parking",
        "urban_management",
        "district",
        ("僵尸车长期占用车位", "废弃车辆停了半年", "报废车落满灰没人管", "一辆破车停很久了"),
        (
            "abandoned car taking a space for months",
            "derelict vehicle left for half a year",
            "junk car covered in dust",
            "wrecked car left here a long time",
        ),
        ("轮胎都瘪了", "车窗碎了", "没有车牌", "里面堆满杂物"),
        ("tyres flat", "windows smashed", "no plates", "full of junk"),
    ),
    IncidentKind(
        "fallen_tree",
        "greening",
        "greening",
        "district",
        ("大树被风刮倒", "树枝断了挡路", "行道树倒伏压到车", "树倒在人行道上"),
        (
            "large tree blown down",
            "broken branch blocking the road",
            "street tree fell on a car",
            "tree lying across the sidewalk",
        ),
        ("昨晚大风", "压住了电线", "车辆无法通行", "需要尽快清理"),
        ("after last night's wind", "resting on wires", "cars cannot pass", "needs clearing soon"),
    ),
    IncidentKind(
        "vendor",
        "market",
        "urban_management",
        "district",
        ("小摊贩占道经营", "路边摆摊堵塞人行道", "流动摊贩油烟扰民", "早市占道摆摊"),
        (
            "street vendors occupying the road",
            "stalls blocking the sidewalk",
            "food vendor smoke bothering residents",
            "morning market stalls on the street",
        ),
        ("每天早上都有", "垃圾乱扔", "行人走不过去", "城管来了就跑"),
        (
            "every morning",
            "litter left behind",
            "pedestrians cannot pass",
            "they run when officers come",
        ),
    ),
    IncidentKind(
        "burning",
        "environment",
        "environment_bureau",
        "city",
        ("有人露天焚烧垃圾", "空地上烧东西冒黑烟", "焚烧秸秆烟很大", "工厂排放刺鼻气味"),
        (
            "open burning of rubbish",
            "black smoke from burning on a vacant lot",
            "straw burning, lots of smoke",
            "factory releasing a pungent smell",
        ),
        ("呛得喘不过气", "整个小区都是烟", "窗户都不敢开", "晚上更严重"),
        ("hard to breathe", "smoke over the whole estate", "cannot open windows", "worse at night"),
    ),
)

_ZH_LANDMARK = ("{p}门口", "{p}附近", "{p}东侧", "靠近{p}", "{p}对面", "{p}南边路口")
_EN_LANDMARK = (
    "outside {p}",
    "near {p}",
    "east of {p}",
    "next to {p}",
    "across from {p}",
    "at the corner by {p}",
)
_ZH_FILL = ("请尽快处理", "希望有关部门管一管", "麻烦派人来看看", "谢谢", "", "")
_EN_FILL = (
    "please fix asap",
    "someone please look at this",
    "please send someone",
    "thanks",
    "",
    "",
)
_CHANNELS = ("12345", "app", "wechat", "web", "grid_worker")


def make_reports(
    city: SyntheticCity,
    n_incidents: int = 400,
    *,
    start: str = "2026-03-02",
    days: int = 7,
    seed: int = 0,
    en_share: float = 0.3,
    mean_reports: float = 2.2,
    hard_negative_share: float = 0.4,
    scatter_m: float = 40.0,
) -> pd.DataFrame:
    """Citizen reports of ``n_incidents`` generated incidents, sorted by time.

    Returns one row per report: ``id`` ("R-000001"), ``t`` (UTC), ``x``/``y``,
    ``service_code`` (the incident kind's category), ``category``, ``title``,
    ``description``, ``channel``, ``lang``, and the ground truth ``incident_id``,
    ``kind``, ``district``, ``department`` (``"<district> <role>"`` for district-level
    roles, else the role) and ``level``.
    """
    if n_incidents < 1 or days < 1 or not 0 <= en_share <= 1:
        raise SynthError("need n_incidents >= 1, days >= 1 and 0 <= en_share <= 1")
    rng = np.random.default_rng([seed, 77])
    mx, my = city.metres_per_degree()
    pois = city.pois.reset_index(drop=True)
    px = pois.geometry.x.to_numpy()
    py = pois.geometry.y.to_numpy()
    t0 = pd.Timestamp(start, tz=city.tz).tz_convert("UTC")
    span_s = days * 86400.0
    node_x, node_y = city.node_x, city.node_y
    incidents: list[tuple[int, float, float, float]] = []  # kind, x, y, t_s
    while len(incidents) < n_incidents:
        k = int(rng.integers(len(INCIDENT_KINDS)))
        node = int(rng.integers(len(node_x)))
        x, y = float(node_x[node]), float(node_y[node])
        ts = float(rng.uniform(0, span_s * 0.9))
        incidents.append((k, x, y, ts))
        if rng.random() < hard_negative_share and len(incidents) < n_incidents:
            # another incident of the same category close by, soon after
            same = [
                i
                for i, ik in enumerate(INCIDENT_KINDS)
                if ik.category == INCIDENT_KINDS[k].category
            ]
            k2 = int(rng.choice(same))
            d = float(rng.uniform(60, 250)) if k2 != k else float(rng.uniform(250, 450))
            a = float(rng.uniform(0, 2 * np.pi))
            incidents.append(
                (
                    k2,
                    x + d * np.cos(a) / mx,
                    y + d * np.sin(a) / my,
                    ts + float(rng.uniform(0, 6 * 3600)),
                )
            )
    districts = city.districts
    tree = shapely.STRtree(districts.geometry.to_numpy())
    rows: list[dict[str, object]] = []
    for inc, (k, x, y, ts) in enumerate(incidents):
        kind = INCIDENT_KINDS[k]
        hit = tree.query(shapely.Point(x, y), predicate="intersects")
        district = str(districts["name"].iat[int(hit[0])]) if len(hit) else "outside"
        dept = f"{district} {kind.role}" if kind.level == "district" else kind.role
        near = int(np.argmin((px - x) ** 2 + (py - y) ** 2))
        landmark = str(pois["name"].iat[near])
        n_rep = 1 + int(rng.poisson(mean_reports - 1))
        for _ in range(n_rep):
            lang = "en" if rng.random() < en_share else "zh"
            if lang == "zh":
                obj, det = str(rng.choice(kind.zh)), str(rng.choice(kind.zh_detail))
                lm = str(rng.choice(_ZH_LANDMARK)).format(p=landmark)
                fill = str(rng.choice(_ZH_FILL))
                parts = [lm + obj, det, fill] if rng.random() < 0.6 else [obj, det, fill]
                if rng.random() < 0.3:
                    parts = [parts[1], parts[0], parts[2]]
                desc = "，".join(p for p in parts if p)
                title = obj
            else:
                obj, det = str(rng.choice(kind.en)), str(rng.choice(kind.en_detail))
                lm = str(rng.choice(_EN_LANDMARK)).format(p=landmark)
                fill = str(rng.choice(_EN_FILL))
                parts = [f"{obj} {lm}", det, fill] if rng.random() < 0.6 else [obj, det, fill]
                if rng.random() < 0.3:
                    parts = [parts[1], parts[0], parts[2]]
                desc = ", ".join(p for p in parts if p)
                title = obj.capitalize()
            r = min(float(rng.rayleigh(scatter_m / 1.25)), 3 * scatter_m)
            a = float(rng.uniform(0, 2 * np.pi))
            delay = (
                float(rng.exponential(3 * 3600.0))
                if rows and rng.random() < 0.95
                else float(rng.uniform(0, 36 * 3600))
            )
            rows.append(
                {
                    "t": t0 + pd.Timedelta(seconds=ts + min(delay, 48 * 3600.0)),
                    "x": x + r * np.cos(a) / mx,
                    "y": y + r * np.sin(a) / my,
                    "service_code": kind.category,
                    "category": kind.category,
                    "title": title,
                    "description": desc,
                    "channel": str(rng.choice(_CHANNELS)),
                    "lang": lang,
                    "incident_id": inc,
                    "kind": kind.code,
                    "district": district,
                    "department": dept,
                    "level": kind.level,
                }
            )
    df = pd.DataFrame(rows).sort_values("t", kind="stable").reset_index(drop=True)
    df.insert(0, "id", [f"R-{i + 1:06d}" for i in range(len(df))])
    df["t"] = pd.to_datetime(df["t"], utc=True).astype("datetime64[ms, UTC]")
    return df
